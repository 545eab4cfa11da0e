//! Authorization benchmark: 10,000 tenants x 10 roles (30 permissions, 10
//! assigned users each) in the database; prints the time and memory to load
//! every tenant's policy, in-process decisions/s with p50/p99 across random
//! tenants, and `POST /authz/check` over HTTP with p50/p99.
//!
//! `cargo bench --bench authz`; `LATCHKEY_BENCH_DATABASE_URL` /
//! `LATCHKEY_BENCH_REDIS_URL` for PostgreSQL + Redis; `LATCHKEY_BENCH_TENANTS`
//! (default 10000) and `LATCHKEY_BENCH_SECONDS` (default 5).

use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::SimpleConnection;
use latchkey::config::Secret;
use latchkey::domain::TenantSettings;
use latchkey::store::db::{Db, policies, tenants};
use latchkey::{Application, Config};
use rand::Rng;
use serde_json::{Value, json};

const ROLES: usize = 10;
const USERS_PER_TENANT: usize = 10;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .map(|d| d.as_secs_f64() * 1e6)
        .unwrap_or(0.0)
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
        _ => format!("sqlite://{}", dir.join("authz.db").display()),
    }
}

fn slug(i: usize) -> String {
    format!("tenant-{i:05}")
}

/// Writes the tenants, roles, permissions and assignments straight to the database.
async fn populate(db: &Db, count: usize) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let chunk = chunk.to_vec();
        db.transaction(move |c| {
            for &i in &chunk {
                let t = slug(i);
                tenants::insert(c, &t, &t, &TenantSettings::default())?;
                for r in 0..ROLES {
                    let role = format!("role-{r}");
                    policies::insert_role(c, &t, &role, "bench", false)?;
                    let perms: Vec<(String, String)> = (0..3)
                        .map(|p| {
                            (
                                format!("resource-{r}-{p}"),
                                if p == 2 {
                                    "*".to_owned()
                                } else {
                                    "read".to_owned()
                                },
                            )
                        })
                        .collect();
                    policies::set_role_permissions(c, &t, &role, &perms)?;
                }
                for u in 0..USERS_PER_TENANT {
                    policies::set_user_roles(
                        c,
                        &t,
                        &format!("user-{u}"),
                        &[format!("role-{}", u % ROLES)],
                    )?;
                }
            }
            Ok(())
        })
        .await
        .expect("populate");
    }
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::var("LATCHKEY_BENCH_TENANTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let seconds: u64 = std::env::var("LATCHKEY_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        bind: "127.0.0.1:0".to_owned(),
        database_url: database_url(dir.path()),
        data_dir: dir.path().display().to_string(),
        master_key: Some(Secret::new("11".repeat(32))),
        bootstrap_admin_email: Some("bench@example.com".to_owned()),
        bootstrap_admin_password: Some(Secret::new("correct horse battery staple")),
        log: "error".to_owned(),
        argon2_memory_kib: 4096,
        argon2_iterations: 1,
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
    let backend = if config.redis_url.is_some() {
        "PostgreSQL + Redis"
    } else {
        "SQLite + in-process store"
    };

    let app = Application::build(config.clone())
        .await
        .expect("latchkey starts");
    let state = app.state();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());

    let t0 = Instant::now();
    populate(&state.db, count).await;
    println!(
        "latchkey authz benchmark: {backend}; {count} tenants x {ROLES} roles ({} rules) written in {:.1} s",
        count * (ROLES * 3 + USERS_PER_TENANT),
        t0.elapsed().as_secs_f64()
    );

    let rss_before = rss_mib();
    let t0 = Instant::now();
    for i in 0..count {
        state.authz.policy(&slug(i)).await.expect("load");
    }
    let load = t0.elapsed();
    println!(
        "loaded {} tenant policies in {:.1} s ({:.2} ms each); resident memory {:.0} -> {:.0} MiB ({:.1} KiB per tenant)",
        state.authz.loaded(),
        load.as_secs_f64(),
        load.as_secs_f64() * 1000.0 / count as f64,
        rss_before,
        rss_mib(),
        (rss_mib() - rss_before) * 1024.0 / count as f64
    );

    // In process: random tenant, user, permission.
    let mut lat = Vec::new();
    let mut allowed = 0usize;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut rng = rand::rng();
    while Instant::now() < deadline {
        let t = slug(rng.random_range(0..count));
        let user = format!("user-{}", rng.random_range(0..USERS_PER_TENANT));
        let resource = format!(
            "resource-{}-{}",
            rng.random_range(0..ROLES),
            rng.random_range(0..3)
        );
        let q = Instant::now();
        let d = state
            .authz
            .decide(&t, &user, &resource, "read")
            .await
            .expect("decide");
        lat.push(q.elapsed());
        allowed += usize::from(d.allowed);
    }
    let n = lat.len();
    lat.sort();
    println!(
        "in-process decide   {:>9.0} decisions/s   p50 {:>6.1} us   p99 {:>6.1} us   ({} allowed of {})",
        n as f64 / start.elapsed().as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        allowed,
        n
    );

    // Over HTTP: app tokens of 50 tenants.
    let http = reqwest::Client::new();
    let admin: Value = http
        .post(format!("{base}/tenants/system/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", "bench@example.com"),
            ("password", "correct horse battery staple"),
        ])
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let admin = admin["access_token"]
        .as_str()
        .expect("admin token")
        .to_owned();
    let mut apps = Vec::new();
    for i in (0..count).step_by((count / 50).max(1)) {
        let t = slug(i);
        let master = state.keys.master().clone();
        let tt = t.clone();
        state
            .db
            .transaction(move |c| {
                latchkey::authn::keys::create_key(
                    c,
                    &master,
                    &tt,
                    latchkey::domain::SigningAlg::ES256,
                    latchkey::store::db::now(),
                )
                .map(|_| ())
            })
            .await
            .expect("key");
        let client: Value = http.post(format!("{base}/admin/tenants/{t}/clients")).bearer_auth(&admin)
            .json(&json!({"name": "bench", "type": "confidential", "grant_types": ["client_credentials"]}))
            .send().await.expect("client").json().await.expect("json");
        let token: Value = http
            .post(format!("{base}/tenants/{t}/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_id",
                    client["client_id"].as_str().unwrap_or_default(),
                ),
                (
                    "client_secret",
                    client["client_secret"].as_str().unwrap_or_default(),
                ),
            ])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        apps.push((
            t,
            token["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    let apps = std::sync::Arc::new(apps);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..8 {
        let (http, apps, base) = (http.clone(), apps.clone(), base.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0;
            let mut i = w;
            while Instant::now() < deadline {
                let (t, token) = &apps[i % apps.len()];
                i += 7;
                let body = json!({"subject": format!("user-{}", i % USERS_PER_TENANT), "resource": format!("resource-{}-0", i % ROLES), "action": "read"});
                let q = Instant::now();
                match http.post(format!("{base}/tenants/{t}/authz/check")).bearer_auth(token).json(&body).send().await {
                    Ok(r) if r.status().is_success() => lat.push(q.elapsed()),
                    _ => failed += 1,
                }
            }
            (lat, failed)
        }));
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    for h in handles {
        if let Ok((l, f)) = h.await {
            lat.extend(l);
            failed += f;
        }
    }
    lat.sort();
    println!(
        "HTTP /authz/check   {:>9.0} decisions/s   p50 {:>6.0} us   p99 {:>6.0} us   ({} ok, {} failed; 8 connections, {} tenants)",
        lat.len() as f64 / start.elapsed().as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.len(),
        failed,
        apps.len()
    );
}
