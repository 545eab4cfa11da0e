//! Start-up as a function: `Application::build(config)` binds the listener,
//! builds the pools and returns the server, for `main` and for tests alike.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use utoipa_actix_web::AppExt;

use crate::authn::keys::{KeyRing, MasterKey};
use crate::authn::password::PasswordHasherPool;
use crate::config::Config;
use crate::service::bootstrap;
use crate::state::AppState;
use crate::store::db::{Backend, Db};
use crate::store::session::{MemoryStore, RedisStore, SessionStore};
use crate::{api, ratelimit, telemetry};

/// The master key: configured, or in embedded mode a generated key file.
fn master_key(config: &Config, backend: Backend) -> anyhow::Result<MasterKey> {
    if let Some(key) = &config.master_key {
        return MasterKey::parse(key.expose())
            .map_err(|e| anyhow::anyhow!("LATCHKEY_MASTER_KEY: {e}"));
    }
    if backend == Backend::Postgres {
        anyhow::bail!(
            "LATCHKEY_MASTER_KEY: required with PostgreSQL (every instance must share it); \
             generate one with `openssl rand -hex 32`"
        );
    }
    let path = config.data_dir().join("master.key");
    let existed = path.exists();
    let key = MasterKey::load_or_create_file(&path)
        .map_err(|e| anyhow::anyhow!("LATCHKEY_DATA_DIR: {e}"))?;
    if !existed {
        tracing::warn!(
            path = %path.display(),
            "LATCHKEY_MASTER_KEY is not set: generated a master key file for embedded mode; \
             set LATCHKEY_MASTER_KEY in production"
        );
    }
    Ok(key)
}

/// Connects the stores and builds the shared state (no listener).
pub async fn build_state(config: Config, public_url: String) -> anyhow::Result<Arc<AppState>> {
    let backend = Backend::from_url(&config.database_url)
        .map_err(|e| anyhow::anyhow!("LATCHKEY_DATABASE_URL: {e}"))?;
    // Checked before connecting: a missing key is a configuration error, not an outage.
    let master = master_key(&config, backend)?;
    let db = Db::connect(
        &config.database_url,
        config.database_pool_size,
        Duration::from_millis(config.database_timeout_ms),
    )
    .context("LATCHKEY_DATABASE_URL: cannot connect")?;
    let applied = db.migrate().context("database migration failed")?;
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    }
    let timeout = Duration::from_millis(config.store_timeout_ms);
    let sessions: Arc<dyn SessionStore> = match &config.redis_url {
        Some(url) => Arc::new(
            RedisStore::connect(url, &config.redis_key_prefix, timeout)
                .await
                .context("LATCHKEY_REDIS_URL: cannot connect")?,
        ),
        None => Arc::new(MemoryStore::new()),
    };
    let passwords = PasswordHasherPool::new(
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism,
    )?;
    let keys = KeyRing::new(db.clone(), master);
    Ok(Arc::new(AppState::new(
        config, public_url, db, sessions, keys, passwords,
    )))
}

/// A built, bound, not yet running latchkey.
pub struct Application {
    port: u16,
    server: Server,
    state: Arc<AppState>,
}

impl Application {
    /// Binds `config.bind` (port 0 picks a free port), connects the stores,
    /// runs migrations and the first-start bootstrap.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(&config.bind)
            .with_context(|| format!("LATCHKEY_BIND: cannot listen on {}", config.bind))?;
        let addr = listener.local_addr()?;
        let public_url = config.public_url_or(addr);
        let state = build_state(config, public_url).await?;

        if let Some(done) = bootstrap::first_start(&state)
            .await
            .map_err(|e| anyhow::anyhow!("bootstrap: {e}"))?
        {
            match &done.generated_password {
                Some(password) => eprintln!(
                    "\nlatchkey: created the platform admin {} in tenant system.\n\
                     latchkey: its generated password (shown once): {}\n",
                    done.email,
                    password.expose()
                ),
                None => tracing::info!(email = %done.email, "created the platform admin"),
            }
        }
        if let Some(url) = &state.config.redis_url {
            let follower = Arc::downgrade(&state);
            crate::store::session::spawn_change_listener(
                url.clone(),
                state.config.redis_key_prefix.clone(),
                Arc::new(move |message: &str| {
                    if let Some(state) = follower.upgrade() {
                        state.apply_change(message);
                    }
                }),
            );
        }
        crate::service::keys::spawn_rotation(state.clone());
        crate::service::changes::spawn_follower(&state);

        crate::metrics::handle();
        let data = web::Data::from(state.clone());
        let spec = api::openapi();
        let routes = web::Data::new(api::RouteTable::from_openapi(&spec));
        // Serialised once and shared by every worker: the document as a
        // value is several MB, which each worker would otherwise copy.
        let spec_json = web::Bytes::from(serde_json::to_vec(&spec)?);
        drop(spec);
        let auth_limit = crate::ratelimit::Limit {
            per_second: state.config.rate_limit_auth_per_second,
            burst: state.config.rate_limit_auth_burst,
        };
        let api_limit = crate::ratelimit::Limit {
            per_second: state.config.rate_limit_api_per_second,
            burst: state.config.rate_limit_api_burst,
        };
        let (Some(auth_limiter), Some(api_limiter)) = (
            ratelimit::limiter(ratelimit::Group::Auth, auth_limit, &state.proxies),
            ratelimit::limiter(ratelimit::Group::Api, api_limit, &state.proxies),
        ) else {
            anyhow::bail!("LATCHKEY_RATE_LIMIT_*: limits must be at least 1");
        };
        ratelimit::spawn_cleanup(vec![auth_limiter.clone(), api_limiter.clone()]);
        let max_body = state.config.max_body_bytes;
        let workers = state.config.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let server = HttpServer::new(move || {
            let (app, _) = App::new()
                .into_utoipa_app()
                .configure(api::configure)
                .split_for_parts();
            app.app_data(data.clone())
                .app_data(routes.clone())
                .app_data(api::payload_config(max_body))
                .app_data(api::path_config())
                .route(
                    "/openapi.json",
                    web::get().to({
                        let spec_json = spec_json.clone();
                        move || {
                            let body = spec_json.clone();
                            async move {
                                HttpResponse::Ok()
                                    .content_type(actix_web::http::header::ContentType::json())
                                    .body(body)
                            }
                        }
                    }),
                )
                .service(
                    utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                        .config(utoipa_swagger_ui::Config::from("/openapi.json")),
                )
                // SPEC §3 names `/docs`; the page's relative assets need the slash.
                .route(
                    "/docs",
                    web::get().to(|| async {
                        HttpResponse::PermanentRedirect()
                            .insert_header(("Location", "/docs/"))
                            .finish()
                    }),
                )
                .default_service(web::to(api::fallback))
                .wrap(from_fn(api::extract::tokens_outside_the_header))
                .wrap(ratelimit::middleware(&auth_limiter))
                .wrap(ratelimit::middleware(&api_limiter))
                .wrap(from_fn(api::cors::cors))
                .wrap(from_fn(telemetry::header_limits))
                .wrap(from_fn(telemetry::security_headers))
                .wrap(from_fn(crate::metrics::track))
                .wrap(from_fn(telemetry::request_context))
        })
        .workers(workers)
        .shutdown_timeout(state.config.shutdown_timeout_seconds)
        .listen(listener)?
        .run();
        tracing::info!(address = %addr, public_url = %state.public_url, "latchkey listening");
        Ok(Self {
            port: addr.port(),
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until the process is told to stop. SIGTERM/SIGINT close the
    /// listener at once, let in-flight requests finish (at most
    /// `LATCHKEY_SHUTDOWN_TIMEOUT_SECONDS`), then release the pools.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        tracing::info!("latchkey stopped: in-flight requests finished");
        drop(self.state);
        result
    }
}
