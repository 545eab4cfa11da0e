//! Load benchmark: starts latchkey in-process on a loopback port with the
//! production argon2 parameters and prints login/s (against the argon2 bound
//! of this machine), refresh/s and userinfo/s with p50/p99 latencies.
//!
//! `cargo bench --bench load` (SQLite + in-process store), or with
//! `LATCHKEY_BENCH_DATABASE_URL=postgres://... LATCHKEY_BENCH_REDIS_URL=redis://...`
//! for PostgreSQL + Redis. `LATCHKEY_BENCH_SECONDS` sets each phase's length (default 5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::SimpleConnection;
use latchkey::config::Secret;
use latchkey::{Application, Config};
use serde_json::Value;

const ADMIN: &str = "bench-admin@example.com";
const PASSWORD: &str = "correct horse battery staple";

struct Figures {
    name: &'static str,
    ok: usize,
    failed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn print(mut self) {
        self.latencies.sort();
        let pct = |p: f64| {
            self.latencies
                .get(
                    ((self.latencies.len() as f64 * p) as usize)
                        .min(self.latencies.len().saturating_sub(1)),
                )
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(0.0)
        };
        println!(
            "{:<10} {:>9.1} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} ok, {} failed in {:.1} s)",
            self.name,
            self.ok as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            self.ok,
            self.failed,
            self.elapsed.as_secs_f64()
        );
    }
}

/// Runs `concurrency` loops of `op` for `duration`; each loop keeps its own state.
async fn drive<S, F, Fut>(
    name: &'static str,
    concurrency: usize,
    duration: Duration,
    init: impl Fn(usize) -> S,
    op: F,
) -> Figures
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (bool, S)> + Send,
{
    let start = Instant::now();
    let deadline = start + duration;
    let mut handles = Vec::new();
    for i in 0..concurrency {
        let op = op.clone();
        let mut state = init(i);
        handles.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut lat) = (0usize, 0usize, Vec::new());
            while Instant::now() < deadline {
                let t = Instant::now();
                let (success, next) = op(state).await;
                state = next;
                lat.push(t.elapsed());
                if success { ok += 1 } else { failed += 1 }
            }
            (ok, failed, lat)
        }));
    }
    let mut figures = Figures {
        name,
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for h in handles {
        if let Ok((ok, failed, lat)) = h.await {
            figures.ok += ok;
            figures.failed += failed;
            figures.latencies.extend(lat);
        }
    }
    figures.elapsed = start.elapsed();
    figures
}

/// Hash verifications per second one core manages with the given parameters.
fn argon2_per_core(config: &Config) -> f64 {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
    let params = Params::new(
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism,
        None,
    )
    .expect("params");
    let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let hash = a
        .hash_password(PASSWORD.as_bytes())
        .expect("hash")
        .to_string();
    let parsed = argon2::PasswordHash::new(&hash).expect("parse");
    let n = 20;
    let t = Instant::now();
    for _ in 0..n {
        a.verify_password(PASSWORD.as_bytes(), &parsed)
            .expect("verify");
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn database_url(dir: &std::path::Path) -> String {
    match std::env::var("LATCHKEY_BENCH_DATABASE_URL") {
        Ok(admin) if !admin.is_empty() => {
            let name = format!("latchkey_bench_{}", uuid::Uuid::new_v4().simple());
            let mut c = diesel::PgConnection::establish(&admin).expect("postgres");
            c.batch_execute(&format!("CREATE DATABASE {name}"))
                .expect("create database");
            let (base, _) = admin.rsplit_once('/').expect("database name");
            format!("{base}/{name}")
        }
        _ => format!("sqlite://{}", dir.join("bench.db").display()),
    }
}

const LOGIN_FORM: [(&str, &str); 4] = [
    ("grant_type", "password"),
    ("client_id", "admin-cli"),
    ("username", ADMIN),
    ("password", PASSWORD),
];

async fn login(http: reqwest::Client, url: String) -> Option<Value> {
    let res = http.post(&url).form(&LOGIN_FORM).send().await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.json::<Value>().await.ok()
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("LATCHKEY_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        bind: "127.0.0.1:0".to_owned(),
        database_url: database_url(dir.path()),
        data_dir: dir.path().display().to_string(),
        master_key: Some(Secret::new("00".repeat(32))),
        bootstrap_admin_email: Some(ADMIN.to_owned()),
        bootstrap_admin_password: Some(Secret::new(PASSWORD)),
        log: "error".to_owned(),
        // One load generator on loopback stands for many clients.
        rate_limit_auth_per_second: u32::MAX,
        rate_limit_auth_burst: u32::MAX,
        rate_limit_api_per_second: u32::MAX,
        rate_limit_api_burst: u32::MAX,
        ..Config::default()
    };
    if let Ok(url) = std::env::var("LATCHKEY_BENCH_REDIS_URL")
        && !url.is_empty()
    {
        config.redis_url = Some(url);
        config.redis_key_prefix = format!("lk-bench-{}", uuid::Uuid::new_v4().simple());
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let per_core = argon2_per_core(&config);
    let backend = if config.redis_url.is_some() {
        "PostgreSQL + Redis"
    } else {
        "SQLite + in-process store"
    };

    let app = Application::build(config.clone())
        .await
        .expect("latchkey starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    let token_url = format!("{base}/tenants/system/oauth/token");

    println!("latchkey load benchmark: {backend}, {cores} cores, {seconds} s per phase");
    println!(
        "argon2id m={} KiB t={} p={}: {:.1} verifications/s per core -> bound {:.1} logins/s",
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism,
        per_core,
        per_core * cores as f64
    );

    let concurrency = cores * 4;
    let figures = drive(
        "login",
        concurrency,
        duration,
        |_| (http.clone(), token_url.clone()),
        move |(http, url)| async move {
            let ok = login(http.clone(), url.clone()).await.is_some();
            (ok, (http, url))
        },
    )
    .await;
    let ok = figures.ok as f64 / figures.elapsed.as_secs_f64();
    figures.print();
    println!(
        "           = {:.0}% of the argon2 bound",
        100.0 * ok / (per_core * cores as f64)
    );

    // Each refresh loop owns a refresh-token chain of its own.
    let mut chains = Vec::new();
    for _ in 0..concurrency {
        let t = login(http.clone(), token_url.clone()).await.expect("login");
        chains.push(Arc::new(
            t["refresh_token"].as_str().expect("rt").to_owned(),
        ));
    }
    let figures = drive(
        "refresh",
        concurrency,
        duration,
        |i| (http.clone(), token_url.clone(), chains[i].to_string()),
        |(http, url, rt)| async move {
            let res = http
                .post(&url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", "admin-cli"),
                    ("refresh_token", rt.as_str()),
                ])
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                    Ok(v) => {
                        let next = v["refresh_token"].as_str().unwrap_or_default().to_owned();
                        (true, (http, url, next))
                    }
                    Err(_) => (false, (http, url, rt)),
                },
                _ => (false, (http, url, rt)),
            }
        },
    )
    .await;
    figures.print();

    let access = login(http.clone(), token_url.clone()).await.expect("login")["access_token"]
        .as_str()
        .expect("at")
        .to_owned();
    let userinfo = format!("{base}/tenants/system/oauth/userinfo");
    let figures = drive(
        "userinfo",
        concurrency * 2,
        duration,
        |_| (http.clone(), userinfo.clone(), access.clone()),
        |(http, url, token)| async move {
            let ok = matches!(http.get(&url).bearer_auth(&token).send().await, Ok(r) if r.status().is_success());
            (ok, (http, url, token))
        },
    )
    .await;
    figures.print();
}
