//! SPEC §7 account lockout: repeated failures lock sign-in, the answer stays
//! that of a wrong password, admins see and lift the lock.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, USER_PASSWORD, assert_problem, json, slug, spawn_app, str_of};

/// Status and body of a sign-in, for comparing answers byte for byte.
async fn attempt(app: &TestApp, t: &str, email: &str, password: &str) -> (u16, Value) {
    let res = app.password_grant(t, email, password).await;
    let status = res.status().as_u16();
    (status, json(res).await)
}

/// A tenant locking after `threshold` failures, with one user: (slug, user id, e-mail).
async fn tenant_with_threshold(
    app: &TestApp,
    admin: &str,
    threshold: u32,
) -> (String, String, String) {
    let t = slug("lock");
    app.create_tenant(admin, &t, json!({"lockout_threshold": threshold}))
        .await;
    let email = format!("victim@{t}.test");
    let id = app.create_user(admin, &t, &email).await;
    (t, id, email)
}

async fn user_view(app: &TestApp, admin: &str, t: &str, id: &str) -> Value {
    let res = app
        .get(&format!("/admin/tenants/{t}/users/{id}"), admin)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    json(res).await
}

#[tokio::test]
async fn a_locked_account_answers_exactly_like_a_wrong_password() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, id, email) = tenant_with_threshold(&app, &admin, 3).await;

    let wrong = attempt(&app, &t, &email, "not the password at all").await;
    assert_eq!(wrong.0, 400);
    assert_eq!(wrong.1["error"], "invalid_grant");
    assert_eq!(user_view(&app, &admin, &t, &id).await["locked"], false);
    for _ in 0..2 {
        assert_eq!(attempt(&app, &t, &email, "still not it").await, wrong);
    }
    // Locked now: the right password gets the wrong-password answer.
    assert_eq!(attempt(&app, &t, &email, USER_PASSWORD).await, wrong);
    // An unknown e-mail gets the same answer too.
    assert_eq!(
        attempt(&app, &t, &format!("nobody@{t}.test"), USER_PASSWORD).await,
        wrong
    );

    let view = user_view(&app, &admin, &t, &id).await;
    assert_eq!(view["locked"], true);
    let until =
        chrono::DateTime::parse_from_rfc3339(str_of(&view, "locked_until")).expect("RFC 3339");
    let left = until.timestamp() - chrono::Utc::now().timestamp();
    assert!(
        (55..=61).contains(&left),
        "first lock is one minute, {left} s left"
    );

    let res = app
        .get(
            &format!("/admin/tenants/{t}/audit?action=login.locked"),
            &admin,
        )
        .await;
    let events = json(res).await;
    let items = events["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{events}");
    assert_eq!(items[0]["target"], id.as_str());
}

#[tokio::test]
async fn an_admin_lifts_the_lock_and_cannot_impose_one() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, id, email) = tenant_with_threshold(&app, &admin, 2).await;
    for _ in 0..2 {
        attempt(&app, &t, &email, "wrong wrong wrong").await;
    }
    assert_eq!(attempt(&app, &t, &email, USER_PASSWORD).await.0, 400);

    let path = format!("/admin/tenants/{t}/users/{id}");
    let res = app
        .patch_json(&path, &admin, &json!({"locked": true}))
        .await;
    let body = assert_problem(res, StatusCode::BAD_REQUEST, "validation_failed").await;
    assert!(str_of(&body, "detail").starts_with("locked"), "{body}");

    let res = app
        .patch_json(&path, &admin, &json!({"locked": false}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let view = json(res).await;
    assert_eq!(view["locked"], false);
    assert!(view["locked_until"].is_null());
    assert_eq!(attempt(&app, &t, &email, USER_PASSWORD).await.0, 200);

    let res = app
        .get(
            &format!("/admin/tenants/{t}/audit?action=user.unlock"),
            &admin,
        )
        .await;
    assert_eq!(json(res).await["items"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_successful_sign_in_resets_the_failure_count() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, email) = tenant_with_threshold(&app, &admin, 3).await;
    for _ in 0..3 {
        for _ in 0..2 {
            assert_eq!(attempt(&app, &t, &email, "nope nope nope").await.0, 400);
        }
        assert_eq!(attempt(&app, &t, &email, USER_PASSWORD).await.0, 200);
    }
}

#[tokio::test]
async fn failures_in_one_tenant_do_not_lock_the_same_email_in_another() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (a, _, email_a) = tenant_with_threshold(&app, &admin, 2).await;
    let b = slug("lock");
    app.create_tenant(&admin, &b, json!({"lockout_threshold": 2}))
        .await;
    app.create_user(&admin, &b, &email_a).await;
    for _ in 0..2 {
        attempt(&app, &a, &email_a, "wrong wrong wrong").await;
    }
    assert_eq!(attempt(&app, &a, &email_a, USER_PASSWORD).await.0, 400);
    assert_eq!(attempt(&app, &b, &email_a, USER_PASSWORD).await.0, 200);
}

#[tokio::test]
async fn a_burst_of_parallel_guesses_cannot_outrun_the_lock() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, id, email) = tenant_with_threshold(&app, &admin, 10).await;
    let checks_before = app.state.passwords.stored_hash_checks();
    let burst: Vec<_> = (0..60)
        .map(|i| {
            let (app, t, email) = (&app, t.clone(), email.clone());
            async move {
                attempt(app, &t, &email, &format!("wrong guess {i}"))
                    .await
                    .0
            }
        })
        .collect();
    // The right password once the guesses are under way (and at the latest
    // when the lock has engaged), while the burst is still being answered.
    let right = async {
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(5) {
            let view = user_view(&app, &admin, &t, &id).await;
            if view["locked"] == true {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        attempt(&app, &t, &email, USER_PASSWORD).await.0
    };
    let (statuses, right) = tokio::join!(futures_util::future::join_all(burst), right);
    assert!(statuses.iter().all(|s| *s == 400), "{statuses:?}");
    assert_eq!(right, 400, "the right password during the lock");
    let checked = app.state.passwords.stored_hash_checks() - checks_before;
    println!(
        "60 parallel guesses then the right password, threshold 10: {checked} checked against the real hash"
    );
    assert!(
        checked <= 10,
        "{checked} guesses were checked against the real hash"
    );
    assert_eq!(user_view(&app, &admin, &t, &id).await["locked"], true);
}

#[tokio::test]
async fn wrong_current_passwords_count_towards_the_lockout() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, email) = tenant_with_threshold(&app, &admin, 3).await;
    let tokens = app.login(&t, &email, USER_PASSWORD).await;
    let change = |current: &'static str| {
        let (app, t, token) = (&app, t.clone(), str_of(&tokens, "access_token").to_owned());
        async move {
            app.post_json(
                &format!("/tenants/{t}/me/password"),
                &token,
                &json!({"current_password": current, "new_password": "a brand new passphrase here"}),
            )
            .await
            .status()
        }
    };
    for _ in 0..3 {
        assert_eq!(change("not my password").await, StatusCode::BAD_REQUEST);
    }
    // Locked: the right current password is refused too, and so is sign-in.
    assert_eq!(change(USER_PASSWORD).await, StatusCode::BAD_REQUEST);
    assert_eq!(attempt(&app, &t, &email, USER_PASSWORD).await.0, 400);
}

#[tokio::test]
async fn more_parallel_sign_ins_than_the_threshold_all_succeed() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, email) = tenant_with_threshold(&app, &admin, 3).await;
    let burst = (0..12).map(|_| attempt(&app, &t, &email, USER_PASSWORD));
    let statuses: Vec<u16> = futures_util::future::join_all(burst)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}
