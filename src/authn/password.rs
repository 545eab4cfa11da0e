//! argon2id password hashing on threads of its own, below the request
//! workers' CPU priority, bounded to the cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher, Version};
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

/// The nice value of the hashing threads (Linux; 0 is the request workers').
/// Token checks preempt a hash whenever they need a core, so a storm of
/// sign-ins costs them little latency; an idle machine still gives the
/// hashes every core (nice only weighs threads that compete).
pub const HASH_THREAD_NICE: i32 = 10;

/// How long a hashing thread keeps its argon2 memory after its last hash:
/// within a burst each hash reuses the memory of the one before, instead of
/// faulting in the whole memory cost (19 MiB by default) again.
const KEEP_MEMORY: Duration = Duration::from_secs(2);

/// Work for a hashing thread, given the thread's argon2 memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Hashes and verifies passwords; at most one hash per core runs at once,
/// on hashing threads at a lower CPU priority than the request workers, so a
/// burst of logins cannot starve token verification.
#[derive(Clone)]
pub struct PasswordHasherPool {
    params: Params,
    permits: Arc<Semaphore>,
    jobs: crossbeam_channel::Sender<Job>,
    queued: Arc<AtomicUsize>,
    dummy_hash: Arc<String>,
    /// Verifications against a stored hash (not the dummy) so far.
    stored_checks: Arc<std::sync::atomic::AtomicU64>,
}

/// Lowers the calling thread's CPU priority by `HASH_THREAD_NICE` from the
/// process's (relative, so it holds under a process already niced, capped
/// at 19 by the kernel).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: nice changes only the nice value of the calling thread (on
    // Linux the nice value is per thread); lowering priority needs no
    // privilege.
    unsafe {
        libc::nice(HASH_THREAD_NICE);
    }
}

/// Starts `count` hashing threads taking jobs from one queue. They end when
/// the last sender (the last clone of the pool) is dropped.
fn spawn_hash_threads(
    count: usize,
    keep_blocks: usize,
) -> Result<crossbeam_channel::Sender<Job>, HashError> {
    let (sender, receiver) = crossbeam_channel::unbounded::<Job>();
    for i in 0..count {
        let receiver = receiver.clone();
        std::thread::Builder::new()
            .name(format!("argon2-{i}"))
            .spawn(move || {
                lower_priority();
                let mut memory: Vec<Block> = Vec::new();
                loop {
                    let job = if memory.is_empty() {
                        receiver.recv().map_err(|_| ())
                    } else {
                        match receiver.recv_timeout(KEEP_MEMORY) {
                            Ok(job) => Ok(job),
                            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                                memory = Vec::new();
                                continue;
                            }
                            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(()),
                        }
                    };
                    let Ok(job) = job else { break };
                    // A panicking job drops its reply; the thread goes on.
                    let _ =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut memory)));
                    // What a stored hash of larger parameters grew is not
                    // kept: only the pool's own memory cost is.
                    if memory.len() > keep_blocks {
                        memory = Vec::new();
                    }
                }
            })
            .map_err(|e| HashError::Hash(format!("cannot start a hashing thread: {e}")))?;
    }
    Ok(sender)
}

/// Whether `password` hashes to `parsed` (an argon2 PHC hash), computed in
/// `memory` (grown as the hash's parameters need) and compared in constant
/// time. Anything that is not a well-formed argon2 hash matches nothing.
fn hash_matches(password: &[u8], parsed: &PasswordHash, memory: &mut Vec<Block>) -> bool {
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(parsed) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        // Fallible: a stored hash naming an absurd memory cost matches
        // nothing instead of aborting the process.
        if memory.try_reserve_exact(blocks - memory.len()).is_err() {
            return false;
        }
        memory.resize(blocks, Block::default());
    }
    let mut buffer = [0u8; 64];
    let Some(out) = buffer.get_mut(..expected.len()) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params);
    if argon2
        .hash_password_into_with_memory(password, salt, out, &mut memory[..])
        .is_err()
    {
        return false;
    }
    subtle::ConstantTimeEq::ct_eq(&*out, expected.as_bytes()).into()
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
        let keep_blocks = params.block_count();
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(cores)),
            jobs: spawn_hash_threads(cores, keep_blocks)?,
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
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let depth = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        crate::metrics::argon2_queue_depth(depth);
        let result = async {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|e| HashError::Hash(e.to_string()))?;
            let (reply, answer) = tokio::sync::oneshot::channel();
            // The caller's span goes along, so the job's logs keep its fields.
            let span = tracing::Span::current();
            self.jobs
                .send(Box::new(move |memory: &mut Vec<Block>| {
                    // A caller gone (its request cancelled) no longer
                    // waits: its hash is not run for nobody.
                    if reply.is_closed() {
                        return;
                    }
                    let _entered = span.enter();
                    let _ = reply.send(f(memory));
                }))
                .map_err(|_| HashError::Hash("the hashing threads have stopped".to_owned()))?;
            answer
                .await
                .map_err(|_| HashError::Hash("the hashing job failed".to_owned()))
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
        self.run(move |_| {
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
        self.run(move |memory| {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Verified::No;
            };
            // Every candidate is tried, matched or not, so the time depends
            // on the input only (never on whether the user exists).
            let matched: Vec<bool> = candidates
                .iter()
                .map(|c| hash_matches(c.expose().as_bytes(), &parsed, memory))
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
    async fn hashes_of_other_parameters_verify_in_the_memory_of_earlier_ones() {
        let small = PasswordHasherPool::new(8192, 1, 1).expect("params");
        let large = PasswordHasherPool::new(12288, 1, 2).expect("params");
        let pw = Secret::new("correct horse battery staple");
        let (h_small, h_large) = (
            small.hash(&pw).await.expect("hash"),
            large.hash(&pw).await.expect("hash"),
        );
        // One pool's threads keep their memory between these checks: a
        // larger hash grows it, a smaller one uses the front of it.
        for stored in [&h_small, &h_large, &h_small, &h_large] {
            assert!(matches!(
                small.verify(&pw, Some(stored)).await.expect("verify"),
                Verified::Yes | Verified::YesRehashed(_)
            ));
            assert_eq!(
                small
                    .verify(&Secret::new("Correct horse battery staple"), Some(stored))
                    .await
                    .expect("verify"),
                Verified::No
            );
        }
        for broken in [
            "",
            "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ",
            "$bcrypt$x",
            // 4 TiB of argon2 memory: refused, never an aborting allocation.
            "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(
                small.verify(&pw, Some(broken)).await.expect("verify"),
                Verified::No
            );
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashes_run_below_the_request_workers_cpu_priority() {
        let pool = PasswordHasherPool::new(8192, 1, 1).expect("params");
        // Field 19 of /proc/thread-self/stat is the thread's nice value; the
        // command name (field 2) has no spaces here ("argon2-N").
        let nice = pool
            .run(|_| {
                std::fs::read_to_string("/proc/thread-self/stat")
                    .ok()
                    .and_then(|s| s.split_whitespace().nth(18)?.parse::<i32>().ok())
            })
            .await
            .expect("job");
        assert_eq!(nice, Some(super::HASH_THREAD_NICE));
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_threads_go_on() {
        let pool = PasswordHasherPool::new(8192, 1, 1).expect("params");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for _ in 0..cores + 1 {
            assert!(pool.run(|_| -> u8 { panic!("job fails") }).await.is_err());
        }
        let pw = Secret::new("correct horse battery staple");
        let h = pool.hash(&pw).await.expect("hash after panics");
        assert_eq!(
            pool.verify(&pw, Some(&h)).await.expect("verify"),
            Verified::Yes
        );
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
