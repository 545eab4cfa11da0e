//! One conformance suite for every `SessionStore`: the in-process store
//! always, Redis when `LATCHKEY_TEST_REDIS_URL` is set.

use std::sync::Arc;
use std::time::Duration;

use latchkey::store::session::{
    AccessState, EndReason, Ephemeral, LockoutPolicy, LoginLock, MemoryStore, PresentedRefresh,
    RedisStore, RefreshRecord, RefreshState, Reservation, RotateOutcome, Rotation, SessionRecord,
    SessionStore, Taken, UserCut,
};

async fn stores() -> Vec<(&'static str, Arc<dyn SessionStore>)> {
    let mut out: Vec<(&'static str, Arc<dyn SessionStore>)> =
        vec![("memory", Arc::new(MemoryStore::new()))];
    if let Ok(url) = std::env::var("LATCHKEY_TEST_REDIS_URL")
        && !url.is_empty()
    {
        let prefix = format!("lk-store-{}", uuid::Uuid::new_v4().simple());
        let redis = RedisStore::connect(&url, &prefix, Duration::from_secs(2))
            .await
            .expect("redis");
        out.push(("redis", Arc::new(redis)));
    }
    for (_, store) in &out {
        for tenant in ["t", "t1", "t2", "u", "kept", "gone"] {
            store.mark_synced(tenant).await.expect("mark synced");
        }
    }
    out
}

/// A sign-in attempt's id, unique to the call.
fn attempt_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn session(user: &str) -> SessionRecord {
    let now = chrono::Utc::now().timestamp();
    SessionRecord {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: user.to_owned(),
        client_id: "admin-cli".to_owned(),
        created_at: now,
        last_used_at: now,
        ip: Some("127.0.0.1".to_owned()),
        user_agent: None,
    }
}

fn record(s: &SessionRecord) -> RefreshRecord {
    let now = chrono::Utc::now().timestamp();
    RefreshRecord {
        family_id: uuid::Uuid::new_v4().to_string(),
        session_id: s.id.clone(),
        client_id: s.client_id.clone(),
        user_id: s.user_id.clone(),
        expires_at: now + 600,
        family_expires_at: now + 3600,
        scope: "openid".to_owned(),
        client_generation: "g1".to_owned(),
    }
}

fn cut(except: Option<&str>, reason: EndReason) -> UserCut<'_> {
    UserCut {
        except,
        reason,
        linger: 60,
        lifetime: 3600,
    }
}

#[tokio::test]
async fn sessions_are_created_listed_touched_and_ended() {
    for (name, store) in stores().await {
        let a = session("u1");
        let b = session("u1");
        store
            .create_session("t1", &a, 60, 100, 60)
            .await
            .expect("create");
        store
            .create_session("t1", &b, 60, 100, 60)
            .await
            .expect("create");
        assert_eq!(
            store.get_session("t1", &a.id).await.expect("get"),
            Some(a.clone()),
            "{name}"
        );
        assert_eq!(
            store.get_session("t2", &a.id).await.expect("get"),
            None,
            "{name}: tenants are apart"
        );
        assert_eq!(
            store
                .list_user_sessions("t1", "u1")
                .await
                .expect("list")
                .len(),
            2,
            "{name}"
        );
        store
            .touch_session("t1", &a.id, a.last_used_at + 5)
            .await
            .expect("touch");
        let touched = store
            .get_session("t1", &a.id)
            .await
            .expect("get")
            .expect("session");
        assert_eq!(touched.last_used_at, a.last_used_at + 5, "{name}");

        assert_eq!(
            store
                .access_state("t1", "j1", Some((&a.id, "u1")))
                .await
                .expect("state"),
            AccessState::Active
        );
        assert!(
            store
                .end_session("t1", &a.id, EndReason::Revoked, 60)
                .await
                .expect("end"),
            "{name}"
        );
        assert!(
            !store
                .end_session("t1", &a.id, EndReason::Revoked, 60)
                .await
                .expect("end"),
            "{name}: only once"
        );
        assert_eq!(
            store
                .access_state("t1", "j1", Some((&a.id, "u1")))
                .await
                .expect("state"),
            AccessState::Revoked,
            "{name}"
        );
        assert_eq!(store.get_session("t1", &a.id).await.expect("get"), None);
        let listed = store.list_user_sessions("t1", "u1").await.expect("list");
        assert_eq!(
            listed.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
            vec![b.id.clone()],
            "{name}"
        );

        assert_eq!(
            store
                .end_user_sessions("t1", "u1", cut(None, EndReason::Disabled))
                .await
                .expect("end all"),
            1,
            "{name}"
        );
        assert_eq!(
            store
                .access_state("t1", "j1", Some((&b.id, "u1")))
                .await
                .expect("state"),
            AccessState::Disabled,
            "{name}"
        );
        assert_eq!(
            store
                .access_state("t1", "j1", Some(("never-existed", "u1")))
                .await
                .expect("state"),
            AccessState::Revoked
        );
    }
}

#[tokio::test]
async fn ending_every_session_but_one_keeps_that_one() {
    for (name, store) in stores().await {
        let keep = session("u2");
        let other = session("u2");
        store
            .create_session("t", &keep, 60, 100, 60)
            .await
            .expect("create");
        store
            .create_session("t", &other, 60, 100, 60)
            .await
            .expect("create");
        let n = store
            .end_user_sessions("t", "u2", cut(Some(&keep.id), EndReason::Revoked))
            .await
            .expect("end");
        assert_eq!(n, 1, "{name}");
        assert!(
            store
                .get_session("t", &keep.id)
                .await
                .expect("get")
                .is_some(),
            "{name}"
        );
        assert!(
            store
                .get_session("t", &other.id)
                .await
                .expect("get")
                .is_none(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn rotation_is_compare_and_swap_and_revocation_stops_it() {
    for (name, store) in stores().await {
        let s = session("u3");
        store
            .create_session("t", &s, 60, 100, 60)
            .await
            .expect("create");
        let r = record(&s);
        store.start_family("t", "h0", &r).await.expect("start");
        let fam = r.family_id.clone();
        let token = |hash: &'static str| PresentedRefresh {
            hash,
            family_id: Some(&fam),
        };
        let entry = store
            .get_refresh("t", token("h0"))
            .await
            .expect("get")
            .expect("entry");
        assert_eq!(entry.state, RefreshState::Current, "{name}");
        assert!(entry.family_active && entry.session_active);
        assert_eq!(entry.record, r);

        let rotate = |old: &'static str, new: &'static str| Rotation {
            old_hash: old,
            new_hash: new,
            new_record: &r,
            sealed_successor: "sealed",
            now: 1000,
            grace_seconds: 10,
        };
        assert_eq!(
            store
                .rotate_refresh("t", rotate("h0", "h1"))
                .await
                .expect("rotate"),
            RotateOutcome::Rotated,
            "{name}"
        );
        assert_eq!(
            store
                .rotate_refresh("t", rotate("h0", "hx"))
                .await
                .expect("rotate"),
            RotateOutcome::LostRace,
            "{name}"
        );
        assert_eq!(
            store
                .rotate_refresh("t", rotate("nope", "hy"))
                .await
                .expect("rotate"),
            RotateOutcome::LostRace,
            "{name}"
        );
        match store
            .get_refresh("t", token("h0"))
            .await
            .expect("get")
            .expect("entry")
            .state
        {
            RefreshState::Rotated {
                rotated_at,
                successor_is_current,
                sealed_successor,
            } => {
                assert_eq!(rotated_at, 1000, "{name}");
                assert!(successor_is_current, "{name}");
                assert_eq!(sealed_successor.as_deref(), Some("sealed"));
            }
            other => panic!("{name}: expected rotated, got {other:?}"),
        }
        assert_eq!(
            store
                .rotate_refresh("t", rotate("h1", "h2"))
                .await
                .expect("rotate"),
            RotateOutcome::Rotated
        );
        match store
            .get_refresh("t", token("h0"))
            .await
            .expect("get")
            .expect("entry")
            .state
        {
            RefreshState::Rotated {
                successor_is_current,
                ..
            } => assert!(!successor_is_current, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        store
            .revoke_family("t", &r.family_id)
            .await
            .expect("revoke");
        assert!(
            !store
                .get_refresh("t", token("h2"))
                .await
                .expect("get")
                .expect("entry")
                .family_active,
            "{name}"
        );
        assert_eq!(
            store
                .rotate_refresh("t", rotate("h2", "h3"))
                .await
                .expect("rotate"),
            RotateOutcome::Revoked,
            "{name}"
        );
        assert!(
            store
                .get_refresh("other", token("h2"))
                .await
                .expect("get")
                .is_none(),
            "{name}: tenants are apart"
        );
    }
}

#[tokio::test]
async fn a_denied_jti_expires_with_its_ttl() {
    for (name, store) in stores().await {
        store.deny_jti("t", "jti-1", 1).await.expect("deny");
        assert_eq!(
            store.access_state("t", "jti-1", None).await.expect("state"),
            AccessState::Revoked,
            "{name}"
        );
        assert_eq!(
            store.access_state("t", "jti-2", None).await.expect("state"),
            AccessState::Active,
            "{name}"
        );
        assert_eq!(
            store.access_state("u", "jti-1", None).await.expect("state"),
            AccessState::Active,
            "{name}"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            store.access_state("t", "jti-1", None).await.expect("state"),
            AccessState::Active,
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_user_cut_off_ends_sessions_the_index_lost_and_keeps_later_ones() {
    for (name, store) in stores().await {
        let user = format!("u-cut-{name}");
        let old = session(&user);
        store
            .create_session("t", &old, 60, 100, 60)
            .await
            .expect("create");
        // Listing, ending and cutting all agree on a user with no sessions.
        let n = store
            .end_user_sessions("t", "nobody", cut(None, EndReason::Revoked))
            .await
            .expect("end none");
        assert_eq!(n, 0, "{name}");
        let n = store
            .end_user_sessions("t", &user, cut(None, EndReason::Disabled))
            .await
            .expect("end all");
        assert_eq!(n, 1, "{name}");
        assert_eq!(
            store
                .access_state("t", "j", Some((&old.id, &user)))
                .await
                .expect("state"),
            AccessState::Disabled,
            "{name}: the cut-off answers with its reason"
        );
        let later = session(&user);
        store
            .create_session("t", &later, 60, 100, 60)
            .await
            .expect("create");
        assert_eq!(
            store
                .access_state("t", "j", Some((&later.id, &user)))
                .await
                .expect("state"),
            AccessState::Active,
            "{name}: a session begun after the cut-off lives"
        );
        let listed = store.list_user_sessions("t", &user).await.expect("list");
        assert_eq!(
            listed.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
            vec![later.id.clone()],
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_user_past_the_session_cap_loses_the_oldest_sessions() {
    for (name, store) in stores().await {
        let user = format!("u-cap-{name}");
        let mut ids: Vec<String> = Vec::new();
        for i in 0..5 {
            let mut s = session(&user);
            s.created_at += i;
            let ended = store
                .create_session("t", &s, 60, 3, 60)
                .await
                .expect("create");
            if i < 3 {
                assert!(ended.is_empty(), "{name}");
            } else {
                assert_eq!(ended, vec![ids[(i - 3) as usize].clone()], "{name}");
            }
            ids.push(s.id.clone());
        }
        let listed: Vec<String> = store
            .list_user_sessions("t", &user)
            .await
            .expect("list")
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(listed, ids[2..].to_vec(), "{name}");
        assert_eq!(
            store
                .access_state("t", "j", Some((&ids[0], &user)))
                .await
                .expect("state"),
            AccessState::Revoked,
            "{name}"
        );
    }
}

#[tokio::test]
async fn listing_and_ending_page_through_many_sessions() {
    for (name, store) in stores().await {
        let user = format!("u-many-{name}");
        let mut ids = Vec::new();
        for i in 0..230 {
            let mut s = session(&user);
            s.created_at += i;
            store
                .create_session("t", &s, 60, 1000, 60)
                .await
                .expect("create");
            ids.push(s.id);
        }
        for sid in ids.iter().step_by(3) {
            store
                .end_session("t", sid, EndReason::Revoked, 60)
                .await
                .expect("end");
        }
        let live: Vec<String> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(_, id)| id.clone())
            .collect();
        let listed: Vec<String> = store
            .list_user_sessions("t", &user)
            .await
            .expect("list")
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(listed, live, "{name}");
        let n = store
            .end_user_sessions("t", &user, cut(Some(&live[0]), EndReason::Revoked))
            .await
            .expect("end all");
        assert_eq!(n, live.len() - 1, "{name}");
        let listed: Vec<String> = store
            .list_user_sessions("t", &user)
            .await
            .expect("list")
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(listed, vec![live[0].clone()], "{name}");
    }
}

#[tokio::test]
async fn purging_a_tenant_removes_its_state_only() {
    for (name, store) in stores().await {
        let s = session("u4");
        store
            .create_session("gone", &s, 60, 100, 60)
            .await
            .expect("create");
        store
            .create_session("kept", &s, 60, 100, 60)
            .await
            .expect("create");
        store.purge_tenant("gone").await.expect("purge");
        assert!(
            store
                .get_session("gone", &s.id)
                .await
                .expect("get")
                .is_none(),
            "{name}"
        );
        assert!(
            store
                .get_session("kept", &s.id)
                .await
                .expect("get")
                .is_some(),
            "{name}"
        );
        store.ping().await.expect("ping");
    }
}

#[tokio::test]
async fn failed_logins_lock_for_a_minute_then_double_up_to_an_hour() {
    for (name, store) in stores().await {
        let policy = LockoutPolicy::with_threshold(3);
        let t0 = 1_900_000_000;
        let fail = |now: i64| {
            let store = store.clone();
            async move {
                store
                    .login_failed("t1", "u1", &attempt_id(), &policy, now)
                    .await
                    .expect("login_failed")
                    .lock
            }
        };
        assert_eq!(fail(t0).await.failures, 1, "{name}");
        assert_eq!(fail(t0 + 1).await.failures, 2, "{name}");
        let locked = fail(t0 + 2).await;
        assert_eq!(
            locked,
            LoginLock {
                failures: 0,
                locked_until: t0 + 2 + 60,
                level: 1
            },
            "{name}"
        );
        // Attempts during the lock are not counted and do not extend it.
        assert_eq!(fail(t0 + 30).await, locked, "{name}");
        assert_eq!(
            store.login_lock("t1", "u1").await.expect("read"),
            locked,
            "{name}"
        );
        // Each further lock doubles: 2, 4, ... minutes, capped at one hour.
        let mut now = locked.locked_until;
        let mut lengths = Vec::new();
        for _ in 0..7 {
            let mut last = LoginLock::default();
            for _ in 0..3 {
                last = fail(now).await;
            }
            lengths.push(last.locked_until - now);
            now = last.locked_until;
        }
        assert_eq!(lengths, [120, 240, 480, 960, 1920, 3600, 3600], "{name}");
        // Clearing forgets the failures and the level.
        store.clear_login_failures("t1", "u1").await.expect("clear");
        assert_eq!(
            store.login_lock("t1", "u1").await.expect("read"),
            LoginLock::default(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn failures_outside_the_window_do_not_add_up_and_accounts_are_separate() {
    for (name, store) in stores().await {
        let policy = LockoutPolicy::with_threshold(2);
        let t0 = 1_900_000_000;
        store
            .login_failed("t1", "u1", &attempt_id(), &policy, t0)
            .await
            .expect("fail");
        // 15 minutes later the first failure no longer counts.
        let after = store
            .login_failed("t1", "u1", &attempt_id(), &policy, t0 + 15 * 60)
            .await
            .expect("fail")
            .lock;
        assert_eq!((after.failures, after.locked_until), (1, 0), "{name}");
        // Another user, or the same id in another tenant, has its own count.
        for (t, u) in [("t1", "u2"), ("t2", "u1")] {
            let other = store
                .login_failed(t, u, &attempt_id(), &policy, t0)
                .await
                .expect("fail")
                .lock;
            assert_eq!(other.failures, 1, "{name} {t}/{u}");
        }
    }
}

#[tokio::test]
async fn concurrent_failures_are_counted_once_each() {
    for (name, store) in stores().await {
        let policy = LockoutPolicy::with_threshold(10);
        let now = chrono::Utc::now().timestamp();
        let tasks: Vec<_> = (0..25)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .login_failed("t1", "race", &attempt_id(), &policy, now)
                        .await
                })
            })
            .collect();
        let mut locks: Vec<LoginLock> = Vec::new();
        let mut counted = 0;
        for task in tasks {
            let attempt = task.await.expect("task").expect("fail");
            counted += usize::from(attempt.counted);
            locks.push(attempt.lock);
        }
        assert_eq!(counted, 10, "{name}: the threshold, then refusals");
        // Exactly one failure reached the threshold; the rest were counted
        // before it or refused during the lock.
        let lockers = locks
            .iter()
            .filter(|l| l.level == 1 && l.failures == 0)
            .count();
        assert_eq!(lockers, 16, "{name}: {locks:?}");
        let state = store.login_lock("t1", "race").await.expect("read");
        assert_eq!((state.level, state.locked_until), (1, now + 60), "{name}");
    }
}

#[tokio::test]
async fn a_store_that_lost_a_tenant_says_so_until_it_is_refilled() {
    for (name, store) in stores().await {
        let tenant = format!("fresh-{}", uuid::Uuid::new_v4().simple());
        assert_eq!(
            store.access_state(&tenant, "j", None).await.expect("state"),
            AccessState::Unsynced,
            "{name}"
        );
        store.deny_jti(&tenant, "denied", 60).await.expect("deny");
        assert_eq!(
            store
                .access_state(&tenant, "denied", None)
                .await
                .expect("state"),
            AccessState::Revoked,
            "{name}: a denial answers even before the refill"
        );
        store.mark_synced(&tenant).await.expect("mark");
        assert!(store.is_synced(&tenant).await.expect("synced"), "{name}");
        assert_eq!(
            store.access_state(&tenant, "j", None).await.expect("state"),
            AccessState::Active,
            "{name}"
        );
        store.purge_tenant(&tenant).await.expect("purge");
        assert_eq!(
            store.access_state(&tenant, "j", None).await.expect("state"),
            AccessState::Unsynced,
            "{name}: data loss is noticed"
        );
    }
}

#[tokio::test]
async fn attempts_in_flight_count_towards_the_threshold_until_released() {
    for (name, store) in stores().await {
        let policy = LockoutPolicy::with_threshold(3);
        let now = chrono::Utc::now().timestamp();
        let user = format!("inflight-{name}");
        let reserve = |id: &'static str| {
            let (store, user) = (store.clone(), user.clone());
            async move {
                store
                    .reserve_login_attempt("t", &user, id, &policy, now)
                    .await
                    .expect("reserve")
            }
        };
        assert_eq!(reserve("a").await, Reservation::Admitted, "{name}");
        assert_eq!(reserve("b").await, Reservation::Admitted, "{name}");
        store
            .login_failed("t", &user, &attempt_id(), &policy, now)
            .await
            .expect("fail");
        // One failure and two in flight (one of them decided, not yet released).
        assert_eq!(reserve("c").await, Reservation::Wait, "{name}");
        store
            .release_login_attempt("t", &user, "a")
            .await
            .expect("release");
        assert_eq!(reserve("c").await, Reservation::Admitted, "{name}");
        // Two failures more lock the account: no reservation then.
        store
            .login_failed("t", &user, &attempt_id(), &policy, now)
            .await
            .expect("fail");
        store
            .login_failed("t", &user, &attempt_id(), &policy, now)
            .await
            .expect("fail");
        assert_eq!(reserve("d").await, Reservation::Locked, "{name}");
    }
}

#[tokio::test]
async fn sessions_that_are_over_do_not_count_towards_the_cap() {
    for (name, store) in stores().await {
        let user = format!("u-capdead-{name}");
        let mut phone = session(&user);
        phone.created_at -= 100;
        store
            .create_session("t", &phone, 60, 3, 60)
            .await
            .expect("create");
        // Short sessions that end by themselves (three live sessions: the cap).
        for i in 0..2 {
            let mut s = session(&user);
            s.created_at += i;
            store
                .create_session("t", &s, 1, 3, 60)
                .await
                .expect("create");
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let mut laptop = session(&user);
        laptop.created_at += 10;
        let ended = store
            .create_session("t", &laptop, 60, 3, 60)
            .await
            .expect("create");
        assert!(ended.is_empty(), "{name}: {ended:?}");
        assert!(
            store
                .get_session("t", &phone.id)
                .await
                .expect("get")
                .is_some(),
            "{name}: the oldest live session survives"
        );
    }
}

/// A cluster client resends a command whose reply it lost (a connection
/// that broke after the node ran it): the second run must change nothing
/// and answer what the first answered.
#[tokio::test]
async fn a_write_run_again_by_a_retry_takes_effect_once() {
    for (name, store) in stores().await {
        // A code taken, then the same take again: the same grant, not a replay.
        let code = Ephemeral::Code;
        store
            .put_ephemeral("t", code, "c9", "grant", 60)
            .await
            .expect("put");
        for _ in 0..2 {
            assert_eq!(
                store
                    .take_ephemeral("t", code, "c9", "mine", 60)
                    .await
                    .expect("take"),
                Taken::Fresh("grant".to_owned()),
                "{name}"
            );
        }
        assert_eq!(
            store
                .take_ephemeral("t", code, "c9", "other", 60)
                .await
                .expect("take"),
            Taken::Used("mine".to_owned()),
            "{name}: another take is a replay"
        );

        // A rotation, then the same rotation again: still rotated once.
        let s = session("u9");
        store
            .create_session("t", &s, 60, 100, 60)
            .await
            .expect("create");
        let r = record(&s);
        store.start_family("t", "k0", &r).await.expect("start");
        let rotate = |old: &'static str, new: &'static str| Rotation {
            old_hash: old,
            new_hash: new,
            new_record: &r,
            sealed_successor: "sealed",
            now: 1000,
            grace_seconds: 0,
        };
        for _ in 0..2 {
            assert_eq!(
                store
                    .rotate_refresh("t", rotate("k0", "k1"))
                    .await
                    .expect("rotate"),
                RotateOutcome::Rotated,
                "{name}"
            );
        }
        assert_eq!(
            store
                .rotate_refresh("t", rotate("k0", "kx"))
                .await
                .expect("rotate"),
            RotateOutcome::LostRace,
            "{name}: another rotation of the old token loses"
        );
        assert_eq!(
            store
                .rotate_refresh("t", rotate("k1", "k2"))
                .await
                .expect("rotate"),
            RotateOutcome::Rotated,
            "{name}: the successor rotates on"
        );

        // An attempt reserved twice takes one place: with a threshold of
        // one it is still admitted.
        let now = chrono::Utc::now().timestamp();
        let one = LockoutPolicy::with_threshold(1);
        let attempt = attempt_id();
        for _ in 0..2 {
            assert_eq!(
                store
                    .reserve_login_attempt("t", "u8", &attempt, &one, now)
                    .await
                    .expect("reserve"),
                Reservation::Admitted,
                "{name}"
            );
        }

        // A failed sign-in reported twice counts once.
        let policy = LockoutPolicy::with_threshold(5);
        let attempt = attempt_id();
        for _ in 0..2 {
            let counted = store
                .login_failed("t", "u9", &attempt, &policy, now)
                .await
                .expect("fail");
            assert!(counted.counted, "{name}");
            assert_eq!(counted.lock.failures, 1, "{name}");
        }
        let next = store
            .login_failed("t", "u9", &attempt_id(), &policy, now)
            .await
            .expect("fail");
        assert_eq!(next.lock.failures, 2, "{name}: another attempt counts");
    }
}

#[tokio::test]
async fn short_lived_records_expire_and_a_code_is_taken_once() {
    for (name, store) in stores().await {
        let (t, kind) = ("t", Ephemeral::SignIn);
        store
            .put_ephemeral(t, kind, "tx1", "{\"a\":1}", 1)
            .await
            .expect("put");
        assert_eq!(
            store
                .get_ephemeral(t, kind, "tx1")
                .await
                .expect("get")
                .as_deref(),
            Some("{\"a\":1}"),
            "{name}"
        );
        // Kinds and tenants do not see each other's records.
        assert_eq!(
            store
                .get_ephemeral(t, Ephemeral::Code, "tx1")
                .await
                .expect("get"),
            None
        );
        assert_eq!(
            store.get_ephemeral("u", kind, "tx1").await.expect("get"),
            None
        );
        store
            .put_ephemeral(t, kind, "tx2", "v", 60)
            .await
            .expect("put");
        store
            .delete_ephemeral(t, kind, "tx2")
            .await
            .expect("delete");
        assert_eq!(
            store.get_ephemeral(t, kind, "tx2").await.expect("get"),
            None,
            "{name}"
        );

        let code = Ephemeral::Code;
        store
            .put_ephemeral(t, code, "c1", "grant", 60)
            .await
            .expect("put");
        let takes = futures_util::future::join_all((0..8).map(|i| {
            let store = store.clone();
            async move {
                store
                    .take_ephemeral("t", Ephemeral::Code, "c1", &format!("m{i}"), 2)
                    .await
            }
        }))
        .await;
        let fresh = takes
            .iter()
            .filter(|r| matches!(r, Ok(Taken::Fresh(v)) if v == "grant"))
            .count();
        assert_eq!(fresh, 1, "{name}: exactly one take wins");
        let marks: Vec<&str> = takes
            .iter()
            .filter_map(|r| match r {
                Ok(Taken::Used(m)) => Some(m.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(marks.len(), 7, "{name}");
        // Every later take sees the winner's mark (and only that one).
        assert!(marks.windows(2).all(|w| w[0] == w[1]), "{name}: {marks:?}");
        // A taken record is no longer readable as fresh.
        assert_eq!(
            store.get_ephemeral(t, code, "c1").await.expect("get"),
            None,
            "{name}"
        );
        assert_eq!(
            store
                .take_ephemeral(t, code, "nope", "m", 2)
                .await
                .expect("take"),
            Taken::Missing,
            "{name}"
        );

        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(
            store.get_ephemeral(t, kind, "tx1").await.expect("get"),
            None,
            "{name}: expired"
        );
        assert_eq!(
            store
                .take_ephemeral(t, code, "c1", "m", 2)
                .await
                .expect("take"),
            Taken::Missing,
            "{name}: the mark lives as long as it was told"
        );
    }
}
