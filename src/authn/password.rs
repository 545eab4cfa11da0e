//! argon2id password hashing off the async workers, bounded to the cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::Semaphore;

use crate::config::Secret;

/// The outcome of checking a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, and here is a hash with the current parameters to store.
    YesRehashed(String),
}

/// Hashes and verifies passwords; at most one hash per core runs at once so a
/// burst of logins cannot starve token verification.
#[derive(Clone)]
pub struct PasswordHasherPool {
    params: Params,
    permits: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
    dummy_hash: Arc<String>,
    /// Verifications against a stored hash (not the dummy) so far.
    stored_checks: Arc<std::sync::atomic::AtomicU64>,
}

/// The text in normalization form C.
fn nfc(text: &str) -> Secret {
    use unicode_normalization::UnicodeNormalization;
    Secret::new(text.nfc().collect::<String>())
}

/// The forms a stored hash may have been made from: NFC first (this
/// version), then the text as typed and its NFD form (hashes of earlier
/// versions, which did not normalise), without repeats.
fn candidates(text: &str) -> Vec<Secret> {
    use unicode_normalization::UnicodeNormalization;
    let mut out = vec![nfc(text)];
    for other in [text.to_owned(), text.nfd().collect::<String>()] {
        if out.iter().all(|c| c.expose() != other) {
            out.push(Secret::new(other));
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("hashing task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl PasswordHasherPool {
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, HashError> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| HashError::Hash(e.to_string()))?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        // Unknown users are checked against this so they take as long as known ones.
        let dummy_hash = hasher
            .hash_password(crate::authn::random_token().as_bytes())
            .map_err(|e| HashError::Hash(e.to_string()))?
            .to_string();
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(cores)),
            queued: Arc::new(AtomicUsize::new(0)),
            dummy_hash: Arc::new(dummy_hash),
            stored_checks: Arc::default(),
        })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Requests waiting for or running a hash now.
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let depth = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        crate::metrics::argon2_queue_depth(depth);
        let result = async {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|e| HashError::Hash(e.to_string()))?;
            Ok(crate::telemetry::spawn_blocking(f).await?)
        }
        .await;
        let depth = self
            .queued
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        crate::metrics::argon2_queue_depth(depth);
        result
    }

    /// Hashes a new password, in Unicode normalization form C (RFC 8265
    /// §4.2.2: the same visible text is the same password however typed).
    pub async fn hash(&self, password: &Secret) -> Result<String, HashError> {
        let argon2 = self.argon2();
        let password = nfc(password.expose());
        self.run(move || {
            argon2
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| HashError::Hash(e.to_string()))
        })
        .await?
    }

    /// Verifies against a stored hash, or against the dummy hash when there is
    /// no user, so both take the same time.
    /// How many verifications ran against a stored hash (rather than the
    /// dummy one that unknown users and locked accounts get).
    pub fn stored_hash_checks(&self) -> u64 {
        self.stored_checks
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn verify(
        &self,
        password: &Secret,
        stored: Option<&str>,
    ) -> Result<Verified, HashError> {
        let argon2 = self.argon2();
        let candidates = candidates(password.expose());
        let known = stored.is_some();
        if known {
            self.stored_checks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let stored = stored.unwrap_or(&self.dummy_hash).to_owned();
        let wanted = self.params.clone();
        self.run(move || {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Verified::No;
            };
            // Every candidate is tried, matched or not, so the time depends
            // on the input only (never on whether the user exists).
            let matched: Vec<bool> = candidates
                .iter()
                .map(|c| {
                    argon2
                        .verify_password(c.expose().as_bytes(), &parsed)
                        .is_ok()
                })
                .collect();
            if !(known && matched.contains(&true)) {
                return Verified::No;
            }
            // A hash an earlier version made from another form of the text.
            let legacy_form = !matched[0];
            let current = Params::try_from(&parsed).ok();
            let outdated = parsed.algorithm.as_str() != "argon2id"
                || current.is_none_or(|p| {
                    p.m_cost() != wanted.m_cost()
                        || p.t_cost() != wanted.t_cost()
                        || p.p_cost() != wanted.p_cost()
                });
            if outdated || legacy_form {
                match argon2.hash_password(candidates[0].expose().as_bytes()) {
                    Ok(h) => Verified::YesRehashed(h.to_string()),
                    Err(_) => Verified::Yes,
                }
            } else {
                Verified::Yes
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::{PasswordHasherPool, Verified};
    use crate::config::Secret;

    const NFC: &str = "Caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e au d\u{e9}jeuner";
    const NFD: &str = "Cafe\u{301} cre\u{300}me bru\u{302}le\u{301}e au de\u{301}jeuner";

    #[tokio::test]
    async fn the_same_visible_password_matches_however_it_is_composed() {
        assert_ne!(NFC, NFD);
        let pool = PasswordHasherPool::new(8192, 1, 1).expect("params");
        for (set, typed) in [(NFC, NFD), (NFD, NFC), (NFC, NFC)] {
            let h = pool.hash(&Secret::new(set)).await.expect("hash");
            assert_eq!(
                pool.verify(&Secret::new(typed), Some(&h))
                    .await
                    .expect("verify"),
                Verified::Yes
            );
        }
        assert_eq!(
            pool.verify(&Secret::new("Cafe creme"), None)
                .await
                .expect("verify"),
            Verified::No
        );
    }

    #[tokio::test]
    async fn a_hash_of_an_unnormalised_password_still_matches_and_is_renewed() {
        use argon2::PasswordHasher;
        let pool = PasswordHasherPool::new(8192, 1, 1).expect("params");
        // What an earlier version stored for a password typed in NFD.
        let earlier = pool
            .argon2()
            .hash_password(NFD.as_bytes())
            .expect("hash")
            .to_string();
        for typed in [NFD, NFC] {
            match pool
                .verify(&Secret::new(typed), Some(&earlier))
                .await
                .expect("verify")
            {
                Verified::YesRehashed(renewed) => assert_eq!(
                    pool.verify(&Secret::new(NFC), Some(&renewed))
                        .await
                        .expect("verify"),
                    Verified::Yes
                ),
                other => panic!("{typed:?}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn hashes_verify_and_outdated_parameters_are_rehashed() {
        let old = PasswordHasherPool::new(8192, 1, 1).expect("params");
        let new = PasswordHasherPool::new(9216, 2, 1).expect("params");
        let pw = Secret::new("correct horse battery staple");
        let h = old.hash(&pw).await.expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert_eq!(
            old.verify(&pw, Some(&h)).await.expect("verify"),
            Verified::Yes
        );
        assert_eq!(
            old.verify(&Secret::new("wrong"), Some(&h))
                .await
                .expect("verify"),
            Verified::No
        );
        match new.verify(&pw, Some(&h)).await.expect("verify") {
            Verified::YesRehashed(h2) => assert!(h2.contains("m=9216,t=2,p=1")),
            other => panic!("expected a rehash, got {other:?}"),
        }
        assert_eq!(new.verify(&pw, None).await.expect("verify"), Verified::No);
    }
}
