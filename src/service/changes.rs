//! Following the change log: the bound on how stale a cached view can be
//! when the pub/sub bus lost a message or its subscriber died silently.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::state::AppState;
use crate::store::db::changes;

/// How often the log is read: views are never more than about this much
/// behind a change made on another instance (SPEC §6: one second).
pub const POLL_INTERVAL: Duration = Duration::from_millis(400);
/// Sequence numbers below the newest that are read again, for changes whose
/// transaction committed after a later one's (PostgreSQL sequences do not
/// follow commit order).
const LATE_WINDOW: i64 = 64;
/// How long the log keeps a change.
const KEEP: chrono::Duration = chrono::Duration::hours(1);

/// Polls the change log for as long as the state lives.
pub fn spawn_follower(state: &Arc<AppState>) -> tokio::task::JoinHandle<()> {
    let weak: Weak<AppState> = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut newest: Option<i64> = None;
        let mut applied: BTreeSet<i64> = BTreeSet::new();
        let mut ticks: u64 = 0;
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            let Some(state) = weak.upgrade() else { return };
            ticks += 1;
            let Some(seen) = newest else {
                // First read: start after what already happened.
                match state.db.run(changes::latest).await {
                    Ok(seq) => newest = Some(seq),
                    Err(e) => tracing::warn!(error = %e, "cannot read the change log"),
                }
                continue;
            };
            let from = (seen - LATE_WINDOW).max(0);
            match state.db.run(move |c| changes::after(c, from, 1000)).await {
                Ok(rows) => {
                    for (seq, message) in rows {
                        if applied.insert(seq) {
                            state.apply_change(&message);
                        }
                        newest = Some(newest.unwrap_or(0).max(seq));
                    }
                    let floor = newest.unwrap_or(0) - LATE_WINDOW;
                    applied.retain(|s| *s > floor);
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the change log"),
            }
            if ticks.is_multiple_of(150) {
                // Housekeeping, about once a minute.
                let _ = state.db.run(|c| changes::prune(c, KEEP)).await;
                let _ = state.db.run(crate::store::db::revoked_tokens::prune).await;
            }
        }
    })
}
