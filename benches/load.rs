//! Load benchmark: starts latchkey in-process on a loopback port with the
//! production argon2 parameters, sets up a tenant `bench` through the admin
//! API as a client would (the bootstrap admin signs in at `system`, creates
//! the tenant, a user and a confidential client, and sets the tenant's
//! refresh grace window to 1 s), then prints one row per measure, with
//! req/s, p50 and p99 and the failures (non-2xx) where a rate applies:
//!
//! 1. `idle RSS`: the latchkey binary started as a child in embedded mode
//!    (SQLite, in-process store), ready and idle for 2 s (target ≤ 40 MB);
//! 2. `redis/user`: Redis memory held by one session of the bench user after
//!    300 refresh rotations and the grace window (PostgreSQL + Redis only;
//!    target ≤ 2 KB);
//! 3. `login`: password grants, against the argon2 bound of this machine
//!    (target ≥ 90 %);
//! 4. `refresh`: refresh rotations, each loop spending its own chain;
//! 5. `userinfo`: GET userinfo with one access token;
//! 6. `client_credentials`: tokens of the confidential client (HTTP Basic);
//! 7. `introspection`: RFC 7662 introspection of a client_credentials token;
//! 8. `storm`: userinfo while 8 loops sign in at the same time (targets:
//!    p99 ≤ 10 ms, throughput ≥ 70 % of row 5).
//!
//! SQLite + in-process store:
//! `cargo bench --bench load`
//!
//! PostgreSQL + Redis:
//! `LATCHKEY_BENCH_DATABASE_URL=postgres://user:pw@host/postgres LATCHKEY_BENCH_REDIS_URL=redis://host cargo bench --bench load`
//!
//! Variables: `LATCHKEY_BENCH_SECONDS` sets each phase's length (default 5);
//! `LATCHKEY_BENCH_DATABASE_URL` is a PostgreSQL URL whose user may create a
//! database (one fresh database per run); `LATCHKEY_BENCH_REDIS_URL` selects
//! Redis (keys under a fresh prefix per run).

use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use diesel::Connection;
use diesel::connection::SimpleConnection;
use latchkey::config::Secret;
use latchkey::{Application, Config};
use serde_json::{Value, json};

const ADMIN: &str = "bench-admin@example.com";
const PASSWORD: &str = "correct horse battery staple";
/// The tenant every measured request targets.
const TENANT: &str = "bench";
/// The user every measured request signs in as or acts for.
const USER: &str = "bench-user@example.com";
/// Signs in during the storm: sign-ins beyond the per-user session cap end
/// the oldest sessions, so the storm's logins use a user of their own and
/// the session behind the userinfo token survives them.
const STORM_USER: &str = "bench-storm@example.com";
/// Refresh rotations of the one session measured in Redis.
const ROTATIONS: usize = 300;

struct Figures {
    name: &'static str,
    ok: usize,
    failed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

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
            "{:<18} {:>9.1} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} ok, {} failed in {:.1} s)",
            self.name,
            self.rate(),
            pct(0.50),
            pct(0.99),
            self.ok,
            self.failed,
            self.elapsed.as_secs_f64()
        );
    }
}

/// A line under a row, aligned with its figures.
fn note(text: &str) {
    println!("{:<18} {text}", "");
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

/// `application/x-www-form-urlencoded` encoding of one value, as HTTP Basic
/// client authentication wants it before base64 (RFC 6749 §2.3.1).
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The `Authorization` header value of a confidential client.
fn basic_auth(client_id: &str, client_secret: &str) -> String {
    let pair = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Whether the answer is a 2xx; its body is read, as a client would, so the
/// connection goes back to the pool.
async fn succeeded(res: reqwest::Result<reqwest::Response>) -> bool {
    match res {
        Ok(r) => {
            let ok = r.status().is_success();
            r.bytes().await.is_ok() && ok
        }
        Err(_) => false,
    }
}

/// A password grant through the public client `admin-cli`: the token answer.
async fn login(http: &reqwest::Client, url: &str, username: &str) -> Option<Value> {
    let res = http
        .post(url)
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("scope", "openid"),
            ("username", username),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.json::<Value>().await.ok()
}

/// Spends `refresh_token`; the successor, or what went wrong.
async fn refresh(http: &reqwest::Client, url: &str, refresh_token: &str) -> Result<String, String> {
    let res = http
        .post(url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "admin-cli"),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status();
    if !status.is_success() {
        let body = res.text().await.unwrap_or_default();
        return Err(format!("{status}: {body}"));
    }
    let v = res.json::<Value>().await.map_err(|e| e.to_string())?;
    v["refresh_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no refresh_token in the answer".to_owned())
}

/// An HTTP client and the URL it calls.
type Target = (reqwest::Client, String);
/// An HTTP client, the URL it calls and a credential (bearer token or
/// `Authorization` value).
type Authed = (reqwest::Client, String, String);

async fn login_once((http, url): Target, username: &'static str) -> (bool, Target) {
    let ok = login(&http, &url, username).await.is_some();
    (ok, (http, url))
}

async fn userinfo_once((http, url, token): Authed) -> (bool, Authed) {
    let ok = succeeded(http.get(&url).bearer_auth(&token).send().await).await;
    (ok, (http, url, token))
}

/// An admin API call that must answer `want`; its JSON body.
async fn admin_call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Value,
    want: u16,
) -> Value {
    let res = http
        .request(method.clone(), url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    assert_eq!(
        status.as_u16(),
        want,
        "{method} {url} answered {status}: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: {e}: {text}"))
}

/// Resident memory of the latchkey binary in embedded mode (SQLite,
/// in-process store, fresh data directory), ready and idle, in MiB.
async fn idle_rss_mib(http: &reqwest::Client) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir for the idle server");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command.arg("serve");
    // Nothing of this process's configuration reaches the child.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LATCHKEY_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .env("LATCHKEY_BIND", format!("127.0.0.1:{port}"))
        .env("LATCHKEY_DATA_DIR", dir.path())
        .env(
            "LATCHKEY_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("idle.db").display()),
        )
        .env("LATCHKEY_MASTER_KEY", "11".repeat(32))
        .env("LATCHKEY_LOG", "error")
        // Its first start prints the generated admin password: not wanted here.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the latchkey binary starts");
    let pid = child.id().expect("the child's pid");
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("the latchkey binary exited before it was ready: {status}");
        }
        if let Ok(r) = http.get(&ready).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the latchkey binary was not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    child.kill().await.expect("the child stops");
    kib / 1024.0
}

/// Bytes Redis holds under `{prefix}*` (sum of `MEMORY USAGE`).
async fn redis_bytes(mut conn: redis::aio::MultiplexedConnection, prefix: &str) -> i64 {
    let pattern = format!("{prefix}*");
    let (mut cursor, mut total) = (0u64, 0i64);
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("SCAN");
        for key in keys {
            // SAMPLES 0: every element of a hash or sorted set is counted.
            let bytes: Option<i64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut conn)
                .await
                .expect("MEMORY USAGE");
            // None: the key expired between SCAN and MEMORY USAGE.
            total += bytes.unwrap_or(0);
        }
        if next == 0 {
            return total;
        }
        cursor = next;
    }
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
    let bound = per_core * cores as f64;
    let backend = if config.redis_url.is_some() {
        "PostgreSQL + Redis"
    } else {
        "SQLite + in-process store"
    };
    let wide = cores * 8;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host((wide + 8).max(64))
        .build()
        .expect("http client");

    println!("latchkey load benchmark: {backend}, {cores} cores, {seconds} s per phase");
    println!(
        "argon2id m={} KiB t={} p={}: {:.1} verifications/s per core -> bound {:.1} logins/s",
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism,
        per_core,
        bound
    );

    // 1. Idle RSS of the binary in embedded mode, whatever the backend pair.
    let rss = idle_rss_mib(&http).await;
    println!(
        "{:<18} {:>9.1} MiB   (embedded mode, ready and idle; target ≤ 40 MB)",
        "idle RSS", rss
    );

    let app = Application::build(config.clone())
        .await
        .expect("latchkey starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());

    // Set-up through the admin API, as a client would do it.
    let admin = login(&http, &format!("{base}/tenants/system/oauth/token"), ADMIN)
        .await
        .expect("the bootstrap admin signs in at system")["access_token"]
        .as_str()
        .expect("admin access_token")
        .to_owned();
    let post = reqwest::Method::POST;
    admin_call(
        &http,
        post.clone(),
        &format!("{base}/admin/tenants"),
        &admin,
        json!({"slug": TENANT, "name": "latchkey bench"}),
        201,
    )
    .await;
    for email in [USER, STORM_USER] {
        admin_call(
            &http,
            post.clone(),
            &format!("{base}/admin/tenants/{TENANT}/users"),
            &admin,
            json!({"email": email, "password": PASSWORD}),
            201,
        )
        .await;
    }
    let client = admin_call(
        &http,
        post,
        &format!("{base}/admin/tenants/{TENANT}/clients"),
        &admin,
        json!({"name": "bench-m2m", "type": "confidential", "grant_types": ["client_credentials"]}),
        201,
    )
    .await;
    let auth = basic_auth(
        client["client_id"].as_str().expect("client_id"),
        client["client_secret"].as_str().expect("client_secret"),
    );
    let tenant = admin_call(
        &http,
        reqwest::Method::PATCH,
        &format!("{base}/admin/tenants/{TENANT}"),
        &admin,
        json!({"settings": {"refresh_grace_seconds": 1}}),
        200,
    )
    .await;
    let grace = tenant["settings"]["refresh_grace_seconds"]
        .as_u64()
        .expect("settings.refresh_grace_seconds");

    let token_url = format!("{base}/tenants/{TENANT}/oauth/token");
    let introspect_url = format!("{base}/tenants/{TENANT}/oauth/introspect");
    let userinfo_url = format!("{base}/tenants/{TENANT}/oauth/userinfo");

    // A client_credentials token and its first introspection, which must say
    // active. It also makes the session store load the tenant's revocations
    // (a per-tenant key), so row 2 counts only what the session adds.
    let res = http
        .post(&token_url)
        .header(reqwest::header::AUTHORIZATION, &auth)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("client_credentials");
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "client_credentials answered {status}: {text}"
    );
    let answer: Value = serde_json::from_str(&text).expect("client_credentials JSON");
    let cc_token = answer["access_token"]
        .as_str()
        .expect("client_credentials access_token")
        .to_owned();
    let res = http
        .post(&introspect_url)
        .header(reqwest::header::AUTHORIZATION, &auth)
        .form(&[("token", cc_token.as_str())])
        .send()
        .await
        .expect("introspection");
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    let answer: Value = serde_json::from_str(&text).unwrap_or_default();
    assert!(
        status.is_success() && answer["active"] == Value::Bool(true),
        "introspection of a fresh client_credentials token answered {status}: {text}"
    );

    // 2. Redis memory of one user's session, before any other load.
    match &config.redis_url {
        Some(url) => {
            let conn = redis::Client::open(url.as_str())
                .expect("redis URL")
                .get_multiplexed_async_connection()
                .await
                .expect("redis connects");
            let before = redis_bytes(conn.clone(), &config.redis_key_prefix).await;
            let first = login(&http, &token_url, USER)
                .await
                .expect("the bench user signs in");
            let mut rt = first["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned();
            for i in 1..=ROTATIONS {
                rt = refresh(&http, &token_url, &rt)
                    .await
                    .unwrap_or_else(|e| panic!("rotation {i} of {ROTATIONS} failed: {e}"));
            }
            // The store keeps a rotation's sealed successor for the grace
            // window plus 2 s; wait until it has expired.
            tokio::time::sleep(Duration::from_secs(grace + 3)).await;
            let after = redis_bytes(conn, &config.redis_key_prefix).await;
            println!(
                "{:<18} {:>9} bytes for one session after {ROTATIONS} rotations (grace {grace} s passed; target ≤ 2 KB)",
                "redis/user",
                after - before
            );
        }
        None => println!(
            "{:<18} applies to Redis only (set LATCHKEY_BENCH_REDIS_URL)",
            "redis/user"
        ),
    }

    // 3. Logins.
    let concurrency = cores * 4;
    let figures = drive(
        "login",
        concurrency,
        duration,
        |_| (http.clone(), token_url.clone()),
        |s| login_once(s, USER),
    )
    .await;
    let rate = figures.rate();
    figures.print();
    note(&format!(
        "= {:.0} % of the argon2 bound (target ≥ 90 %)",
        100.0 * rate / bound
    ));

    // 4. Refresh rotation: each loop owns a fresh session and spends its
    // chain, one token after the other.
    let mut chains = Vec::new();
    for _ in 0..concurrency {
        let t = login(&http, &token_url, USER)
            .await
            .expect("the bench user signs in");
        chains.push(
            t["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
        );
    }
    let figures = drive(
        "refresh",
        concurrency,
        duration,
        |i| (http.clone(), token_url.clone(), chains[i].clone()),
        |(http, url, rt): Authed| async move {
            match refresh(&http, &url, &rt).await {
                Ok(next) => (true, (http, url, next)),
                Err(_) => (false, (http, url, rt)),
            }
        },
    )
    .await;
    figures.print();

    // 5. Userinfo with one access token.
    let access = login(&http, &token_url, USER)
        .await
        .expect("the bench user signs in")["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let figures = drive(
        "userinfo",
        wide,
        duration,
        |_| (http.clone(), userinfo_url.clone(), access.clone()),
        userinfo_once,
    )
    .await;
    let userinfo_rate = figures.rate();
    figures.print();

    // 6. client_credentials with HTTP Basic.
    let figures = drive(
        "client_credentials",
        wide,
        duration,
        |_| (http.clone(), token_url.clone(), auth.clone()),
        |(http, url, auth): Authed| async move {
            let res = http
                .post(&url)
                .header(reqwest::header::AUTHORIZATION, &auth)
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await;
            (succeeded(res).await, (http, url, auth))
        },
    )
    .await;
    figures.print();

    // 7. Introspection of a client_credentials token by its client.
    let figures = drive(
        "introspection",
        wide,
        duration,
        |_| {
            (
                http.clone(),
                introspect_url.clone(),
                auth.clone(),
                cc_token.clone(),
            )
        },
        |(http, url, auth, token): (reqwest::Client, String, String, String)| async move {
            let res = http
                .post(&url)
                .header(reqwest::header::AUTHORIZATION, &auth)
                .form(&[("token", token.as_str())])
                .send()
                .await;
            (succeeded(res).await, (http, url, auth, token))
        },
    )
    .await;
    figures.print();

    // 8. Userinfo while 8 loops sign in.
    let (logins, figures) = tokio::join!(
        drive(
            "storm logins",
            8,
            duration,
            |_| (http.clone(), token_url.clone()),
            |s| login_once(s, STORM_USER),
        ),
        drive(
            "storm",
            wide,
            duration,
            |_| (http.clone(), userinfo_url.clone(), access.clone()),
            userinfo_once,
        ),
    );
    let storm_rate = figures.rate();
    figures.print();
    note(&format!(
        "userinfo under {:.1} logins/s ({} ok, {} failed): {:.0} % of the userinfo row (targets: p99 ≤ 10 ms, ≥ 70 %)",
        logins.rate(),
        logins.ok,
        logins.failed,
        100.0 * storm_rate / userinfo_rate
    ));
}
