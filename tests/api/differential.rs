//! The in-process store and Redis must agree on everything a caller can
//! observe: random sequences of operations (colliding ids, mixed TTLs, a
//! clock that moves) run against both, and every answer is compared.

use std::sync::Arc;
use std::time::Duration;

use latchkey::store::session::{
    EndReason, LockoutPolicy, MemoryStore, PresentedRefresh, RedisStore, RefreshRecord, Rotation,
    SessionRecord, SessionStore, UserCut,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    CreateSession {
        user: u8,
        sid: u8,
        short: bool,
        cap: u8,
    },
    GetSession {
        sid: u8,
    },
    ListUser {
        user: u8,
    },
    EndSession {
        sid: u8,
        disabled: bool,
    },
    EndUser {
        user: u8,
        except: Option<u8>,
        disabled: bool,
    },
    StartFamily {
        family: u8,
        sid: u8,
        user: u8,
        hash: u8,
    },
    GetRefresh {
        family: u8,
        hash: u8,
    },
    Rotate {
        family: u8,
        old: u8,
        new: u8,
        sid: u8,
        user: u8,
    },
    RevokeFamily {
        family: u8,
    },
    Deny {
        jti: u8,
        short: bool,
    },
    Access {
        jti: u8,
        session: Option<(u8, u8)>,
    },
    LoginFailed {
        user: u8,
        later: u16,
    },
    Reserve {
        user: u8,
        attempt: u8,
        later: u16,
    },
    Release {
        user: u8,
        attempt: u8,
    },
    ClearLogin {
        user: u8,
    },
    /// Lets the short TTLs (1 s) run out.
    Wait,
}

/// A sign-in attempt's id, unique to the call.
fn attempt_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0u8..4;
    prop_oneof![
        6 => (0u8..3, id.clone(), any::<bool>(), 1u8..4)
            .prop_map(|(user, sid, short, cap)| Op::CreateSession { user, sid, short, cap }),
        2 => id.clone().prop_map(|sid| Op::GetSession { sid }),
        3 => (0u8..3).prop_map(|user| Op::ListUser { user }),
        2 => (id.clone(), any::<bool>()).prop_map(|(sid, disabled)| Op::EndSession { sid, disabled }),
        2 => (0u8..3, proptest::option::of(id.clone()), any::<bool>())
            .prop_map(|(user, except, disabled)| Op::EndUser { user, except, disabled }),
        3 => (0u8..2, id.clone(), 0u8..3, 0u8..3)
            .prop_map(|(family, sid, user, hash)| Op::StartFamily { family, sid, user, hash }),
        3 => (0u8..2, 0u8..6).prop_map(|(family, hash)| Op::GetRefresh { family, hash }),
        4 => (0u8..2, 0u8..6, 0u8..6, id.clone(), 0u8..3)
            .prop_map(|(family, old, new, sid, user)| Op::Rotate { family, old, new, sid, user }),
        1 => (0u8..2).prop_map(|family| Op::RevokeFamily { family }),
        2 => (0u8..3, any::<bool>()).prop_map(|(jti, short)| Op::Deny { jti, short }),
        4 => (0u8..3, proptest::option::of((id, 0u8..3)))
            .prop_map(|(jti, session)| Op::Access { jti, session }),
        2 => (0u8..2, 0u16..1200).prop_map(|(user, later)| Op::LoginFailed { user, later }),
        2 => (0u8..2, 0u8..4, 0u16..1200)
            .prop_map(|(user, attempt, later)| Op::Reserve { user, attempt, later }),
        1 => (0u8..2, 0u8..4).prop_map(|(user, attempt)| Op::Release { user, attempt }),
        1 => (0u8..2).prop_map(|user| Op::ClearLogin { user }),
        1 => Just(Op::Wait),
    ]
}

/// One operation on one store, answered as text (everything observable).
async fn apply(store: &dyn SessionStore, t: &str, op: &Op, base: i64) -> String {
    let sid = |n: u8| format!("s{n}");
    let user = |n: u8| format!("u{n}");
    let family = |n: u8| format!("00000000-0000-4000-8000-00000000000{n}");
    let hash = |n: u8| format!("h{n}");
    let reason = |disabled: bool| {
        if disabled {
            EndReason::Disabled
        } else {
            EndReason::Revoked
        }
    };
    let record = |f: u8, s: u8, u: u8| RefreshRecord {
        family_id: family(f),
        session_id: sid(s),
        client_id: "c".to_owned(),
        user_id: user(u),
        expires_at: base + 600,
        family_expires_at: base + 3600,
        scope: "openid".to_owned(),
        client_generation: "g".to_owned(),
    };
    let policy = LockoutPolicy::with_threshold(3);
    match op {
        Op::CreateSession {
            user: u,
            sid: s,
            short,
            cap,
        } => {
            let session = SessionRecord {
                id: sid(*s),
                user_id: user(*u),
                client_id: "c".to_owned(),
                created_at: base + i64::from(*s),
                last_used_at: base,
                ip: None,
                user_agent: None,
            };
            let ttl = if *short { 1 } else { 60 };
            format!(
                "{:?}",
                store
                    .create_session(t, &session, ttl, usize::from(*cap), 60)
                    .await
            )
        }
        Op::GetSession { sid: s } => format!("{:?}", store.get_session(t, &sid(*s)).await),
        Op::ListUser { user: u } => {
            let listed = store.list_user_sessions(t, &user(*u)).await;
            format!(
                "{:?}",
                listed.map(|l| l.into_iter().map(|s| s.id).collect::<Vec<_>>())
            )
        }
        Op::EndSession { sid: s, disabled } => {
            format!(
                "{:?}",
                store.end_session(t, &sid(*s), reason(*disabled), 60).await
            )
        }
        Op::EndUser {
            user: u,
            except,
            disabled,
        } => {
            let except = except.map(sid);
            let cut = UserCut {
                except: except.as_deref(),
                reason: reason(*disabled),
                linger: 60,
                lifetime: 3600,
            };
            format!("{:?}", store.end_user_sessions(t, &user(*u), cut).await)
        }
        Op::StartFamily {
            family: f,
            sid: s,
            user: u,
            hash: h,
        } => {
            format!(
                "{:?}",
                store.start_family(t, &hash(*h), &record(*f, *s, *u)).await
            )
        }
        Op::GetRefresh { family: f, hash: h } => {
            let (hash, family) = (hash(*h), family(*f));
            let presented = PresentedRefresh {
                hash: &hash,
                family_id: Some(&family),
            };
            format!("{:?}", store.get_refresh(t, presented).await)
        }
        Op::Rotate {
            family: f,
            old,
            new,
            sid: s,
            user: u,
        } => {
            let (old, new, record) = (hash(*old), hash(*new), record(*f, *s, *u));
            let rotation = Rotation {
                old_hash: &old,
                new_hash: &new,
                new_record: &record,
                sealed_successor: "sealed",
                now: base,
                grace_seconds: 10,
            };
            format!("{:?}", store.rotate_refresh(t, rotation).await)
        }
        Op::RevokeFamily { family: f } => {
            format!("{:?}", store.revoke_family(t, &family(*f)).await)
        }
        Op::Deny { jti, short } => {
            let ttl = if *short { 1 } else { 60 };
            format!("{:?}", store.deny_jti(t, &format!("j{jti}"), ttl).await)
        }
        Op::Access { jti, session } => {
            let session = session.map(|(s, u)| (sid(s), user(u)));
            let session = session.as_ref().map(|(s, u)| (s.as_str(), u.as_str()));
            format!(
                "{:?}",
                store.access_state(t, &format!("j{jti}"), session).await
            )
        }
        Op::LoginFailed { user: u, later } => format!(
            "{:?}",
            store
                .login_failed(
                    t,
                    &user(*u),
                    &attempt_id(),
                    &policy,
                    base + i64::from(*later)
                )
                .await
        ),
        Op::Reserve {
            user: u,
            attempt,
            later,
        } => format!(
            "{:?}",
            store
                .reserve_login_attempt(
                    t,
                    &user(*u),
                    &format!("a{attempt}"),
                    &policy,
                    base + i64::from(*later)
                )
                .await
        ),
        Op::Release { user: u, attempt } => format!(
            "{:?}",
            store
                .release_login_attempt(t, &user(*u), &format!("a{attempt}"))
                .await
        ),
        Op::ClearLogin { user: u } => {
            format!("{:?}", store.clear_login_failures(t, &user(*u)).await)
        }
        Op::Wait => {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            "waited".to_owned()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    #[ignore = "needs Redis: run with --include-ignored and LATCHKEY_TEST_REDIS_URL"]
    fn the_in_process_store_answers_exactly_like_redis(
        ops in proptest::collection::vec(op(), 1..40)
            // Each wait costs a second: at most one per sequence.
            .prop_filter("one wait at most", |ops| ops.iter().filter(|o| matches!(o, Op::Wait)).count() <= 1)
    ) {
        let Ok(url) = std::env::var("LATCHKEY_TEST_REDIS_URL") else {
            panic!("this test needs LATCHKEY_TEST_REDIS_URL: see the README's Tests section");
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let prefix = format!("lk-store-{}", uuid::Uuid::new_v4().simple());
            let redis = RedisStore::connect(&url, &prefix, Duration::from_secs(2)).await.expect("redis");
            let stores: [Arc<dyn SessionStore>; 2] = [Arc::new(MemoryStore::new()), Arc::new(redis)];
            let t = "diff";
            for store in &stores {
                store.mark_synced(t).await.expect("synced");
            }
            let base = chrono::Utc::now().timestamp();
            for (i, op) in ops.iter().enumerate() {
                let memory = apply(stores[0].as_ref(), t, op, base).await;
                let redis = if matches!(op, Op::Wait) {
                    "waited".to_owned()
                } else {
                    apply(stores[1].as_ref(), t, op, base).await
                };
                prop_assert_eq!(&memory, &redis, "step {} {:?} of {:?}", i, op, ops);
            }
            for store in &stores {
                store.purge_tenant(t).await.expect("purge");
            }
            Ok(())
        })?;
    }
}
