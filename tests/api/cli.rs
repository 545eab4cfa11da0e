//! The `latchkey` binary's commands, run as a user would.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{json, spawn_app_with, test_config};

fn latchkey(env: &[(&str, String)], args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    for (key, _) in std::env::vars() {
        if key.starts_with("LATCHKEY_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("LATCHKEY_LOG", "error");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args).output().expect("latchkey runs")
}

#[test]
fn check_config_prints_the_effective_configuration_with_secrets_masked() {
    let out = latchkey(
        &[
            (
                "LATCHKEY_DATABASE_URL",
                "postgres://app:hunter2@db:5432/latchkey".to_owned(),
            ),
            ("LATCHKEY_MASTER_KEY", "ab".repeat(32)),
            (
                "LATCHKEY_BOOTSTRAP_ADMIN_PASSWORD",
                "correct horse battery staple".to_owned(),
            ),
            ("LATCHKEY_CLOCK_LEEWAY_SECONDS", "45".to_owned()),
        ],
        &["check-config"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("hunter2") && !text.contains("abab") && !text.contains("horse"),
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["clock_leeway_seconds"], 45);
    assert_eq!(v["database_url"], "postgres://app:***@db:5432/latchkey");
    assert_eq!(v["master_key"], "***");
}

#[test]
fn a_bad_value_stops_start_up_naming_the_variable() {
    let out = latchkey(
        &[("LATCHKEY_CLOCK_LEEWAY_SECONDS", "soon".to_owned())],
        &["serve"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LATCHKEY_CLOCK_LEEWAY_SECONDS"), "{err}");
}

#[test]
fn postgres_without_a_master_key_is_refused_before_connecting() {
    let out = latchkey(
        &[(
            "LATCHKEY_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none".to_owned(),
        )],
        &["migrate"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LATCHKEY_MASTER_KEY"), "{err}");
}

#[tokio::test]
async fn migrate_and_bootstrap_make_a_tenant_admin_who_can_use_the_admin_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(dir.path());
    let _cleanup = crate::helpers::Cleanup::of(&config);
    let master = config
        .master_key
        .as_ref()
        .map(|k| k.expose().to_owned())
        .unwrap_or_default();
    let env = vec![
        ("LATCHKEY_DATABASE_URL", config.database_url.clone()),
        ("LATCHKEY_MASTER_KEY", master),
        ("LATCHKEY_DATA_DIR", dir.path().display().to_string()),
        ("LATCHKEY_ARGON2_MEMORY_KIB", "4096".to_owned()),
        ("LATCHKEY_ARGON2_ITERATIONS", "1".to_owned()),
    ];
    let out = latchkey(&env, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = latchkey(
        &env,
        &[
            "bootstrap",
            "--tenant",
            "globex",
            "--admin-email",
            "hank@globex.test",
            "--admin-password",
            "seven orange kites over quiet harbors",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("globex"));

    // A generated password is printed once.
    let out = latchkey(
        &env,
        &[
            "bootstrap",
            "--tenant",
            "globex",
            "--admin-email",
            "second@globex.test",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let generated = stdout
        .lines()
        .find_map(|l| l.strip_prefix("password (shown once): "))
        .expect("generated password")
        .to_owned();

    // The same database, served: both admins work in their tenant.
    let db = config.database_url.clone();
    let key = config.master_key.clone();
    let app = spawn_app_with(move |c| {
        c.database_url = db;
        c.master_key = key;
    })
    .await;
    for (email, password) in [
        ("hank@globex.test", "seven orange kites over quiet harbors"),
        ("second@globex.test", generated.as_str()),
    ] {
        let tokens = app.login("globex", email, password).await;
        let token = tokens["access_token"].as_str().expect("token");
        let res = app.get("/admin/tenants/globex/users", token).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(json(res).await["items"].as_array().map(Vec::len), Some(2));
    }
}
