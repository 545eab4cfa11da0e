//! Test harness: every test starts the real app on port 0 with its own
//! database (a temp SQLite file, or a fresh PostgreSQL database when
//! `LATCHKEY_TEST_DATABASE_URL` is set) and its own Redis key prefix (when
//! `LATCHKEY_TEST_REDIS_URL` is set; otherwise the in-process store).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::SimpleConnection;
use latchkey::authn::tokens::{self, AccessClaims};
use latchkey::state::AppState;
use latchkey::{Application, Config};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

pub const ADMIN_EMAIL: &str = "root@platform.test";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";
pub const USER_PASSWORD: &str = "purple monkey dishwasher lamp";
/// The platform admin's sign-in form, for clients of a `latchkey` process.
pub const ADMIN_LOGIN: [(&str, &str); 4] = [
    ("grant_type", "password"),
    ("client_id", "admin-cli"),
    ("username", ADMIN_EMAIL),
    ("password", ADMIN_PASSWORD),
];

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub state: Arc<AppState>,
    pub config: Config,
    _owned: Owned,
    _dir: tempfile::TempDir,
}

/// What a test app made for itself and removes when it ends: its Redis keys.
/// (Its PostgreSQL database is swept by a later run; the SQLite file goes
/// with the temporary directory.)
struct Owned {
    redis_prefix: Option<String>,
}

impl Drop for Owned {
    fn drop(&mut self) {
        // The app may still hold connections to its database until the
        // process ends, and killing them while it exits is not safe for the
        // native client: databases are swept by a later run instead (see
        // `sweep_old_databases`).
        if let (Some(prefix), Ok(url)) =
            (&self.redis_prefix, std::env::var("LATCHKEY_TEST_REDIS_URL"))
        {
            delete_keys(&url, &format!("{prefix}:*"));
        }
    }
}

/// Removes, when dropped, the Redis keys of a test that runs `latchkey`
/// processes from `config` (see `Owned`).
pub struct Cleanup(#[allow(dead_code)] Owned);

impl Cleanup {
    pub fn of(config: &Config) -> Self {
        Self(Owned {
            redis_prefix: config
                .redis_url
                .as_ref()
                .map(|_| config.redis_key_prefix.clone()),
        })
    }
}

/// The per-test PostgreSQL database a URL names, if it is one.
fn database_name(url: &str) -> Option<String> {
    let (_, rest) = url.rsplit_once('/')?;
    let name = rest.split('?').next()?;
    (url.starts_with("postgres") && name.starts_with("latchkey_test_")).then(|| name.to_owned())
}

/// Drops a per-test PostgreSQL database (connections and all).
fn drop_database(url: &str) {
    let (Ok(admin_url), Some(name)) = (
        std::env::var("LATCHKEY_TEST_DATABASE_URL"),
        database_name(url),
    ) else {
        return;
    };
    if let Ok(mut conn) = diesel::PgConnection::establish(&admin_url) {
        let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
}

/// Deletes the Redis keys matching `pattern`, on one node or on every node
/// of a cluster (one key at a time there: keys of several tenants live in
/// several slots; replicas refuse the deletes and get them from their
/// masters).
pub fn delete_keys(url: &str, pattern: &str) {
    use latchkey::store::session::Topology;
    let (nodes, clustered) = match Topology::parse(url) {
        Ok(Topology::Single(url)) => (vec![url], false),
        Ok(Topology::Cluster(nodes)) => (nodes, true),
        Err(_) => return,
    };
    for node in nodes {
        let Ok(client) = redis::Client::open(node.as_str()) else {
            continue;
        };
        let Ok(mut conn) = client.get_connection() else {
            continue;
        };
        let keys: Vec<String> = redis::Commands::scan_match(&mut conn, pattern)
            .map(|found| found.filter_map(Result::ok).collect())
            .unwrap_or_default();
        let chunk = if clustered { 1 } else { 500 };
        for keys in keys.chunks(chunk) {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// A variable a test cannot run without (such tests are `#[ignore]`d, and
/// the PostgreSQL + Redis pass runs them with `--include-ignored`): a clear
/// failure when it is missing, never a silent pass.
pub fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("this test needs {name}: see the README's Tests section"),
    }
}

/// A unique, valid tenant slug.
pub fn slug(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// How old a per-test database must be before a later run drops it: no
/// test runs this long.
const STALE_DATABASE_SECONDS: u64 = 900;

/// Drops the per-test databases of earlier runs (their names carry their
/// creation time), once per test process.
fn sweep_old_databases(admin_url: &str) {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| {
        let Ok(mut conn) = diesel::PgConnection::establish(admin_url) else {
            return;
        };
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Text)]
            datname: String,
        }
        let names: Vec<Name> = diesel::RunQueryDsl::load(
            diesel::sql_query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'latchkey\\_test\\_%'",
            ),
            &mut conn,
        )
        .unwrap_or_default();
        let now = chrono::Utc::now().timestamp() as u64;
        for Name { datname } in names {
            let created = datname
                .strip_prefix("latchkey_test_")
                .and_then(|rest| rest.split('_').next())
                .and_then(|secs| secs.parse::<u64>().ok())
                .unwrap_or(0);
            if now.saturating_sub(created) > STALE_DATABASE_SECONDS {
                let _ =
                    conn.batch_execute(&format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)"));
            }
        }
    });
}

/// A database URL of its own for one test.
fn fresh_database(dir: &std::path::Path) -> String {
    match std::env::var("LATCHKEY_TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.is_empty() => {
            sweep_old_databases(&admin_url);
            let name = format!(
                "latchkey_test_{}_{}",
                chrono::Utc::now().timestamp(),
                uuid::Uuid::new_v4().simple()
            );
            let mut conn = diesel::PgConnection::establish(&admin_url)
                .expect("LATCHKEY_TEST_DATABASE_URL must reach PostgreSQL");
            conn.batch_execute(&format!("CREATE DATABASE {name}"))
                .expect("create test database");
            let (base, _) = admin_url
                .rsplit_once('/')
                .expect("LATCHKEY_TEST_DATABASE_URL needs a database name");
            format!("{base}/{name}")
        }
        _ => format!("sqlite://{}", dir.join("latchkey.db").display()),
    }
}

/// The configuration a test app starts with.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.bind = "127.0.0.1:0".to_owned();
    config.database_url = fresh_database(dir);
    config.database_pool_size = 4;
    config.data_dir = dir.display().to_string();
    config.master_key = Some(latchkey::config::Secret::new(hex_key()));
    config.bootstrap_admin_email = Some(ADMIN_EMAIL.to_owned());
    config.bootstrap_admin_password = Some(latchkey::config::Secret::new(ADMIN_PASSWORD));
    // Real argon2id, lighter parameters so the suite stays fast.
    config.argon2_memory_kib = 4096;
    config.argon2_iterations = 1;
    config.workers = Some(1);
    // Keys sign as soon as they are published unless a test says otherwise.
    config.key_activation_delay_seconds = 0;
    config.log = "error".to_owned();
    // Every test client is 127.0.0.1: limits are exercised by tests/api/limits.rs.
    config.rate_limit_auth_per_second = 100_000;
    config.rate_limit_auth_burst = 100_000;
    config.rate_limit_api_per_second = 100_000;
    config.rate_limit_api_burst = 100_000;
    if let Ok(url) = std::env::var("LATCHKEY_TEST_REDIS_URL")
        && !url.is_empty()
    {
        config.redis_url = Some(url);
        config.redis_key_prefix = format!("lk-test-{}", uuid::Uuid::new_v4().simple());
    }
    config
}

fn hex_key() -> String {
    let mut s = String::new();
    for b in uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
    {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    latchkey::telemetry::init("error", latchkey::config::LogFormat::Text);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    let fresh = (config.database_url.clone(), config.redis_key_prefix.clone());
    adjust(&mut config);
    // The same database, maybe reached another way (a fault proxy).
    let same_database = database_name(&config.database_url) == database_name(&fresh.0);
    let owned = Owned {
        redis_prefix: (config.redis_key_prefix == fresh.1 && config.redis_url.is_some())
            .then(|| fresh.1.clone()),
    };
    if !same_database {
        // The test brought its own database (another app's): ours was never
        // opened, drop it now.
        drop_database(&fresh.0);
    }
    let app = Application::build(config.clone())
        .await
        .expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        base,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client"),
        state,
        config,
        _owned: owned,
        _dir: dir,
    }
}

/// Reads a JSON body, failing with the body text when it is not JSON.
pub async fn json(res: Response) -> Value {
    let text = res.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Asserts a problem+json answer with this status and code; returns the body.
pub async fn assert_problem(res: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status, "unexpected status");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = json(res).await;
    assert_eq!(body["code"], code, "unexpected code in {body}");
    assert_eq!(ct, "application/problem+json", "content type of {body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    body
}

/// Asserts a 401 with the given code and its WWW-Authenticate; returns the header.
pub async fn assert_unauthorized(res: Response, code: &str) -> String {
    let www = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_problem(res, StatusCode::UNAUTHORIZED, code).await;
    www
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a form to a tenant's token endpoint.
    pub async fn token(&self, tenant: &str, form: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url(&format!("/tenants/{tenant}/oauth/token")))
            .form(form)
            .send()
            .await
            .expect("request")
    }

    /// A password grant through `admin-cli`, whatever its answer.
    pub async fn password_grant(&self, tenant: &str, email: &str, password: &str) -> Response {
        self.token(
            tenant,
            &[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", email),
                ("password", password),
            ],
        )
        .await
    }

    /// A refresh through `admin-cli`, whatever its answer.
    pub async fn refresh_grant(&self, tenant: &str, refresh_token: &str) -> Response {
        self.token(
            tenant,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "admin-cli"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// Logs in through `admin-cli`; panics unless it succeeds.
    pub async fn login(&self, tenant: &str, email: &str, password: &str) -> Value {
        let res = self.password_grant(tenant, email, password).await;
        assert_eq!(res.status(), StatusCode::OK, "login of {email} in {tenant}");
        json(res).await
    }

    pub async fn admin_token(&self) -> String {
        self.login("system", ADMIN_EMAIL, ADMIN_PASSWORD).await["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> Response {
        self.http
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> Response {
        self.send_json(reqwest::Method::POST, path, token, body)
            .await
    }

    pub async fn patch_json(&self, path: &str, token: &str, body: &Value) -> Response {
        self.send_json(reqwest::Method::PATCH, path, token, body)
            .await
    }

    /// Creates a tenant as the platform admin.
    pub async fn create_tenant(&self, admin: &str, slug: &str, settings: Value) -> Value {
        let res = self
            .post_json(
                "/admin/tenants",
                admin,
                &json!({"slug": slug, "name": format!("Tenant {slug}"), "settings": settings}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "create tenant {slug}");
        json(res).await
    }

    /// Creates a user; returns its id.
    pub async fn create_user(&self, admin: &str, tenant: &str, email: &str) -> String {
        let res = self
            .post_json(
                &format!("/admin/tenants/{tenant}/users"),
                admin,
                &json!({"email": email, "password": USER_PASSWORD}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "create user {email}");
        json(res).await["id"].as_str().expect("id").to_owned()
    }

    /// A fresh tenant with one user, logged in: (slug, user id, token response).
    pub async fn tenant_with_user(&self, admin: &str, settings: Value) -> (String, String, Value) {
        let t = slug("t");
        self.create_tenant(admin, &t, settings).await;
        let email = format!("user@{t}.test");
        let id = self.create_user(admin, &t, &email).await;
        let tokens = self.login(&t, &email, USER_PASSWORD).await;
        (t, id, tokens)
    }

    /// Creates a confidential client; returns (client_id, secret).
    pub async fn create_confidential_client(
        &self,
        admin: &str,
        tenant: &str,
        grants: &[&str],
    ) -> (String, String) {
        let res = self
            .post_json(
                &format!("/admin/tenants/{tenant}/clients"),
                admin,
                &json!({"name": "backend", "type": "confidential", "grant_types": grants}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body = json(res).await;
        (
            body["client_id"].as_str().expect("client_id").to_owned(),
            body["client_secret"].as_str().expect("secret").to_owned(),
        )
    }

    /// Signs arbitrary claims with a tenant's real active key (for tokens
    /// the API would never issue: expired, not yet valid, ...).
    pub async fn sign_as(&self, tenant: &str, claims: &AccessClaims) -> String {
        let keys = self.state.keys.keys(tenant).await.expect("keys");
        tokens::sign(keys.signing.as_ref().expect("signing key"), claims).expect("sign")
    }

    /// The claims of a token (no verification: for building variants).
    pub fn claims_of(token: &str) -> AccessClaims {
        use base64::Engine;
        let payload = token.split('.').nth(1).expect("payload");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64");
        serde_json::from_slice(&bytes).expect("claims")
    }
}

pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// A `latchkey serve` child process, killed when dropped.
pub struct Instance {
    pub child: Child,
    pub base: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub async fn start(env: &[(String, String)]) -> Instance {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    for (key, _) in std::env::vars() {
        if key.starts_with("LATCHKEY_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("LATCHKEY_BIND", format!("127.0.0.1:{port}"))
        .env("LATCHKEY_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().expect("latchkey starts");
    let instance = Instance {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(res) = http.get(format!("{}/readyz", instance.base)).send().await
            && res.status() == StatusCode::OK
        {
            return instance;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("latchkey on port {port} did not become ready");
}

/// The environment of a `latchkey` process using a test's stores.
pub fn process_env(config: &Config, dir: &std::path::Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("LATCHKEY_DATABASE_URL".into(), config.database_url.clone()),
        (
            "LATCHKEY_MASTER_KEY".into(),
            config
                .master_key
                .as_ref()
                .map(|k| k.expose().to_owned())
                .unwrap_or_default(),
        ),
        ("LATCHKEY_DATA_DIR".into(), dir.display().to_string()),
        ("LATCHKEY_BOOTSTRAP_ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
        (
            "LATCHKEY_BOOTSTRAP_ADMIN_PASSWORD".into(),
            ADMIN_PASSWORD.into(),
        ),
        ("LATCHKEY_ARGON2_MEMORY_KIB".into(), "4096".into()),
        ("LATCHKEY_ARGON2_ITERATIONS".into(), "1".into()),
        (
            "LATCHKEY_RATE_LIMIT_AUTH_PER_SECOND".into(),
            "100000".into(),
        ),
        ("LATCHKEY_RATE_LIMIT_AUTH_BURST".into(), "100000".into()),
        ("LATCHKEY_RATE_LIMIT_API_PER_SECOND".into(), "100000".into()),
        ("LATCHKEY_RATE_LIMIT_API_BURST".into(), "100000".into()),
        // As in `test_config`: a rotated key signs at once.
        (
            "LATCHKEY_KEY_ACTIVATION_DELAY_SECONDS".into(),
            config.key_activation_delay_seconds.to_string(),
        ),
    ];
    if let Some(redis) = &config.redis_url {
        env.push(("LATCHKEY_REDIS_URL".into(), redis.clone()));
        env.push((
            "LATCHKEY_REDIS_KEY_PREFIX".into(),
            config.redis_key_prefix.clone(),
        ));
    }
    env
}
