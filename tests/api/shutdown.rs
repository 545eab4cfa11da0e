//! Graceful shutdown (issue: hardening §7): SIGTERM closes the listener at
//! once, lets every in-flight request finish, and the process exits 0.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{ADMIN_LOGIN, process_env, start, test_config};

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_refuses_new_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(dir.path());
    let _cleanup = crate::helpers::Cleanup::of(&config);
    let mut env = process_env(&config, dir.path());
    // Sign-ins that take a while: argon2id at production cost, two at a time.
    env.retain(|(k, _)| !k.starts_with("LATCHKEY_ARGON2"));
    env.push(("LATCHKEY_ARGON2_MEMORY_KIB".into(), "65536".into()));
    env.push(("LATCHKEY_ARGON2_ITERATIONS".into(), "3".into()));
    let mut instance = start(&env).await;
    let base = instance.base.clone();
    let http = reqwest::Client::new();

    let in_flight = 12;
    let started = Instant::now();
    let requests: Vec<_> = (0..in_flight)
        .map(|_| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                http.post(format!("{base}/tenants/system/oauth/token"))
                    .form(&ADMIN_LOGIN)
                    .send()
                    .await
                    .map(|r| r.status())
            })
        })
        .collect();
    // Let every request reach the server, then ask it to stop.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let pid = instance.child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let signalled = started.elapsed();

    // New connections are refused while the old ones finish.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        late.is_err(),
        "a new connection was accepted after SIGTERM: {late:?}"
    );

    let mut statuses = Vec::new();
    for r in requests {
        statuses.push(
            r.await
                .expect("task")
                .map(|s| s.as_u16())
                .map_err(|e| e.to_string()),
        );
    }
    let finished = started.elapsed();
    assert!(
        statuses.iter().all(|s| s == &Ok(StatusCode::OK.as_u16())),
        "in-flight requests cut: {statuses:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = instance.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "latchkey did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(code.success(), "exit status {code:?}");
    eprintln!(
        "SIGTERM after {signalled:?} with {in_flight} sign-ins in flight: all {} answered 200 by {finished:?}; exit {code:?}",
        statuses.len()
    );
}
