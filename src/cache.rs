//! A bounded, expiring cache of database views that a concurrent change can
//! never leave stale.
//!
//! Loads are single-flight (one load per key at a time; the others wait for
//! it). Each entry remembers the invalidation epoch at which its load began;
//! invalidating a key records a newer epoch for it, so a load that read the
//! database before a change committed is seen as stale when it is read,
//! even if it finished after the invalidation. Invalidation is synchronous
//! and cheap, so the change bus can call it from any thread.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::StoreError;

/// How many stripes of invalidation epochs: keys share a stripe by hash, so
/// memory stays fixed; a collision only costs a needless reload.
const STRIPES: usize = 256;

/// A cache of `V` by `K`, loaded through a closure.
pub struct Cached<K, V> {
    entries: moka::future::Cache<K, (V, u64)>,
    epoch: AtomicU64,
    stripes: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
}

impl<K, V> Cached<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// At most `capacity` entries, each kept at most `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            epoch: AtomicU64::new(1),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn stripe(&self, key: &K) -> &AtomicU64 {
        let h = self.hasher.hash_one(key) as usize;
        &self.stripes[h % STRIPES]
    }

    /// The cached value, or what `load` answers (one load per key at a time).
    /// Errors are not cached.
    pub async fn get_or_load<F, Fut>(&self, key: &K, load: F) -> Result<V, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<V, StoreError>>,
    {
        for _ in 0..3 {
            let invalidated_at = self.stripe(key).load(Ordering::Acquire);
            if let Some((value, loaded_at)) = self.entries.get(key).await {
                if loaded_at > invalidated_at {
                    return Ok(value);
                }
                self.entries.invalidate(key).await;
            }
            let began = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
            let loaded = self
                .entries
                .try_get_with(key.clone(), async { load().await.map(|v| (v, began)) })
                .await
                .map_err(shared_error)?;
            if loaded.1 > self.stripe(key).load(Ordering::Acquire) {
                return Ok(loaded.0);
            }
            // Invalidated while it loaded: load again.
        }
        load().await
    }

    /// Makes the key's current entry (and any load in flight) stale.
    pub fn invalidate(&self, key: &K) {
        let now = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.stripe(key).fetch_max(now, Ordering::AcqRel);
    }

    /// Makes every entry stale.
    pub fn invalidate_all(&self) {
        let now = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        for stripe in self.stripes.iter() {
            stripe.fetch_max(now, Ordering::AcqRel);
        }
        self.entries.invalidate_all();
    }

    /// Entries held now (approximate: recent writes may not be counted yet).
    pub fn len(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Entries held, once every pending write and eviction is applied.
    pub async fn settled_len(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A load error shared by every waiter, as an owned error.
fn shared_error(e: Arc<StoreError>) -> StoreError {
    match &*e {
        StoreError::NotFound(what) => StoreError::NotFound(what),
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::InvalidCursor => StoreError::InvalidCursor,
        StoreError::Unavailable(what, inner) => {
            StoreError::Unavailable(what, anyhow::anyhow!("{inner:#}"))
        }
        StoreError::Other(inner) => StoreError::Other(anyhow::anyhow!("{inner:#}")),
    }
}
