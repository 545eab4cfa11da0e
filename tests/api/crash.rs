//! No half-written objects (issue: hardening §5): a `latchkey` process is
//! killed with SIGKILL in the middle of a stream of admin writes; restarted
//! on the same database, it holds only whole objects, and every write it
//! acknowledged before dying.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_LOGIN, TestApp, USER_PASSWORD, json, process_env, slug, spawn_app_with, start, str_of,
    test_config,
};

#[derive(Default, Debug)]
struct Acknowledged {
    tenants: BTreeSet<String>,
    roles: BTreeSet<String>,
    users: Vec<(String, Vec<String>)>,
    rotations: usize,
}

async fn send(
    http: &reqwest::Client,
    method: Method,
    url: String,
    token: &str,
    body: Value,
) -> Option<(u16, Value)> {
    let res = http
        .request(method, url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = res.status().as_u16();
    Some((status, res.json().await.unwrap_or(Value::Null)))
}

/// Every page of a listing.
async fn all_items(app: &TestApp, path: &str, token: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}?limit=200&cursor={c}"),
            None => format!("{path}?limit=200"),
        };
        let res = app.get(&url, token).await;
        assert_eq!(res.status(), StatusCode::OK, "{url}");
        let page = json(res).await;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

fn names(items: &[Value], key: &str) -> BTreeSet<String> {
    items
        .iter()
        .filter_map(|i| i[key].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn sigkill_during_admin_writes_leaves_only_whole_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(dir.path());
    let _cleanup = crate::helpers::Cleanup::of(&config);
    let env = process_env(&config, dir.path());
    let instance = start(&env).await;
    let http = reqwest::Client::new();
    let base = instance.base.clone();

    let res = http
        .post(format!("{base}/tenants/system/oauth/token"))
        .form(&ADMIN_LOGIN)
        .send()
        .await
        .expect("login");
    let admin = str_of(&json(res).await, "access_token").to_owned();
    let home = slug("crash");
    let (status, _) = send(
        &http,
        Method::POST,
        format!("{base}/admin/tenants"),
        &admin,
        json!({"slug": home, "name": "home"}),
    )
    .await
    .expect("create home tenant");
    assert_eq!(status, 201);

    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let mut writers = Vec::new();
    for kind in 0..4 {
        let (http, base, admin, home, acked) = (
            http.clone(),
            base.clone(),
            admin.clone(),
            home.clone(),
            acked.clone(),
        );
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                match kind {
                    // A tenant with its built-in roles, client and first key.
                    0 => {
                        let t = format!("{home}-t{i}");
                        let body = json!({"slug": t, "name": "crash test"});
                        match send(
                            &http,
                            Method::POST,
                            format!("{base}/admin/tenants"),
                            &admin,
                            body,
                        )
                        .await
                        {
                            Some((201, _)) => acked.lock().tenants.insert(t),
                            _ => break,
                        };
                    }
                    // A role with three permissions.
                    1 => {
                        let name = format!("role-{i}");
                        let body = json!({"name": name, "permissions": [
                            {"resource": "docs", "action": "read"},
                            {"resource": "docs", "action": "write"},
                            {"resource": "files", "action": "read"}
                        ]});
                        match send(
                            &http,
                            Method::POST,
                            format!("{base}/admin/tenants/{home}/roles"),
                            &admin,
                            body,
                        )
                        .await
                        {
                            Some((201, _)) => acked.lock().roles.insert(name),
                            _ => break,
                        };
                    }
                    // A user, then its role set.
                    2 => {
                        let email = format!("u{i}@{home}.test");
                        let body = json!({"email": email, "password": USER_PASSWORD});
                        let Some((201, user)) = send(
                            &http,
                            Method::POST,
                            format!("{base}/admin/tenants/{home}/users"),
                            &admin,
                            body,
                        )
                        .await
                        else {
                            break;
                        };
                        let id = str_of(&user, "id").to_owned();
                        let roles = vec!["viewer".to_owned(), "admin".to_owned()];
                        match send(
                            &http,
                            Method::PUT,
                            format!("{base}/admin/tenants/{home}/users/{id}/roles"),
                            &admin,
                            json!({"roles": roles}),
                        )
                        .await
                        {
                            Some((200, _)) => acked.lock().users.push((id, roles)),
                            _ => break,
                        }
                    }
                    // Key rotation: a new key, the old one retired, in one step.
                    _ => match send(
                        &http,
                        Method::POST,
                        format!("{base}/admin/tenants/{home}/keys/rotate"),
                        &admin,
                        json!({}),
                    )
                    .await
                    {
                        Some((s, _)) if s < 300 => acked.lock().rotations += 1,
                        _ => break,
                    },
                }
            }
        }));
    }
    // Kill somewhere in the middle of the stream.
    let delay = 700 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 3;
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let mut instance = instance;
    instance.child.kill().expect("SIGKILL");
    let _ = instance.child.wait();
    for w in writers {
        w.await.expect("writer");
    }
    let acked = std::mem::take(&mut *acked.lock());
    eprintln!(
        "killed after {delay} ms: {} tenants, {} roles, {} users with roles, {} key rotations acknowledged",
        acked.tenants.len(),
        acked.roles.len(),
        acked.users.len(),
        acked.rotations
    );
    assert!(
        !acked.tenants.is_empty() && !acked.roles.is_empty(),
        "{acked:?}"
    );

    // The same database (and Redis prefix), a fresh process.
    let app = spawn_app_with(|c| {
        c.database_url = config.database_url.clone();
        c.master_key = config.master_key.clone();
        c.redis_key_prefix = config.redis_key_prefix.clone();
    })
    .await;
    let admin = app.admin_token().await;

    let tenants = names(&all_items(&app, "/admin/tenants", &admin).await, "slug");
    assert!(
        acked.tenants.is_subset(&tenants),
        "an acknowledged tenant was lost"
    );
    let created: Vec<&String> = tenants
        .iter()
        .filter(|t| t.starts_with(&format!("{home}-t")))
        .collect();
    for t in &created {
        let roles = all_items(&app, &format!("/admin/tenants/{t}/roles"), &admin).await;
        for builtin in ["admin", "viewer"] {
            let role = roles.iter().find(|r| r["name"] == builtin);
            let perms = role.and_then(|r| r["permissions"].as_array()).map(Vec::len);
            assert!(
                perms.is_some_and(|n| n > 0),
                "{t}: built-in role {builtin} missing or empty"
            );
        }
        let clients = all_items(&app, &format!("/admin/tenants/{t}/clients"), &admin).await;
        assert!(
            names(&clients, "client_id").contains("admin-cli"),
            "{t}: admin-cli missing"
        );
        let res = app
            .http
            .get(app.url(&format!("/tenants/{t}/.well-known/jwks.json")))
            .send()
            .await
            .expect("jwks");
        let jwks = json(res).await;
        assert!(
            jwks["keys"].as_array().is_some_and(|k| !k.is_empty()),
            "{t}: no key"
        );
    }

    let roles = all_items(&app, &format!("/admin/tenants/{home}/roles"), &admin).await;
    let custom: Vec<&Value> = roles.iter().filter(|r| r["builtin"] == false).collect();
    for role in &custom {
        assert_eq!(
            role["permissions"].as_array().map(Vec::len),
            Some(3),
            "half-written role {role}"
        );
    }
    assert!(
        acked.roles.is_subset(&names(&roles, "name")),
        "an acknowledged role was lost"
    );

    for (id, roles) in &acked.users {
        let res = app
            .get(&format!("/admin/tenants/{home}/users/{id}/roles"), &admin)
            .await;
        let mut got: Vec<String> = json(res).await["roles"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        got.sort();
        let mut want = roles.clone();
        want.sort();
        assert_eq!(got, want, "user {id}");
    }

    // Exactly one signing key after the rotations, and it signs.
    let keys = all_items(&app, &format!("/admin/tenants/{home}/keys"), &admin).await;
    let active = keys.iter().filter(|k| k["status"] == "active").count();
    assert_eq!(active, 1, "{keys:?}");
    let email = format!("after@{home}.test");
    app.create_user(&admin, &home, &email).await;
    app.login(&home, &email, USER_PASSWORD).await;
    eprintln!(
        "after restart: {} tenants whole, {} custom roles with 3 permissions each, {} keys",
        created.len(),
        custom.len(),
        keys.len()
    );
}
