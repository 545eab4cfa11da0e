//! Typed settings, layered: defaults -> TOML file (`LATCHKEY_CONFIG`) ->
//! `LATCHKEY_*` environment variables (and `LATCHKEY_*_FILE` for secrets).
//!
//! A bad value stops start-up with a message naming the variable.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize, Serializer};

/// A secret value: never printed, never logged.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Everything latchkey can be told at start.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub bind: String,
    /// Public base URL; issuers are `{public_url}/tenants/{slug}`. Default: `http://{bind}`.
    pub public_url: Option<String>,
    /// `sqlite://path` or `postgres://...`.
    pub database_url: String,
    /// Connections kept in the database pool.
    pub database_pool_size: u32,
    /// Time a request may wait for a database connection before it answers
    /// 503; a PostgreSQL call (wait plus statement) may take twice this.
    pub database_timeout_ms: u64,
    /// `redis://...`; unset means the in-process session store.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key.
    pub redis_key_prefix: String,
    /// Time a session-store call may take before the request answers 503.
    pub store_timeout_ms: u64,
    pub bootstrap_admin_email: Option<String>,
    pub bootstrap_admin_password: Option<Secret>,
    /// Tolerance for `exp`/`nbf` checks.
    pub clock_leeway_seconds: u64,
    /// 32 bytes, base64 or hex, that encrypt signing keys at rest.
    pub master_key: Option<Secret>,
    /// Where embedded mode keeps its generated master key file.
    pub data_dir: String,
    /// Log filter (`info`, `latchkey=debug`, ...).
    pub log: String,
    pub log_format: LogFormat,
    /// argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// HTTP worker threads; default: one per core.
    pub workers: Option<usize>,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout_seconds: u64,
    /// A new signing key is published this long before it signs, so JWKS
    /// caches learn it first (the JWKS `max-age` never exceeds this delay).
    pub key_activation_delay_seconds: u64,
    /// Signing keys older than this are rotated automatically; 0 turns it off.
    pub key_rotation_days: u64,
    /// Per client IP on token, revoke, introspect, signup and password change.
    pub rate_limit_auth_per_second: u32,
    pub rate_limit_auth_burst: u32,
    /// Per client IP on every other route (admin, resource, discovery).
    pub rate_limit_api_per_second: u32,
    pub rate_limit_api_burst: u32,
    /// Comma-separated addresses or networks whose `X-Forwarded-For` is believed.
    pub trusted_proxies: String,
    /// Largest request body (JSON or form) accepted; larger answers 413.
    pub max_body_bytes: usize,
    /// Live sessions one user may hold; a sign-in beyond it ends the oldest.
    pub max_sessions_per_user: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_owned(),
            public_url: None,
            database_url: "sqlite://./data/latchkey.db".to_owned(),
            database_pool_size: 10,
            database_timeout_ms: 2000,
            redis_url: None,
            redis_key_prefix: "latchkey".to_owned(),
            store_timeout_ms: 1000,
            bootstrap_admin_email: None,
            bootstrap_admin_password: None,
            clock_leeway_seconds: 30,
            master_key: None,
            data_dir: "./data".to_owned(),
            log: "info".to_owned(),
            log_format: LogFormat::Text,
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            workers: None,
            shutdown_timeout_seconds: 30,
            key_activation_delay_seconds: 300,
            key_rotation_days: 90,
            rate_limit_auth_per_second: 10,
            rate_limit_auth_burst: 30,
            rate_limit_api_per_second: 200,
            rate_limit_api_burst: 400,
            trusted_proxies: String::new(),
            max_body_bytes: 64 * 1024,
            max_sessions_per_user: 100,
        }
    }
}

/// A configuration problem, naming the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
}

fn bad(variable: &str, problem: impl fmt::Display) -> ConfigError {
    ConfigError {
        variable: variable.to_owned(),
        problem: problem.to_string(),
    }
}

/// The variables latchkey reads, with whether they hold a secret.
pub const VARIABLES: &[(&str, bool)] = &[
    ("LATCHKEY_BIND", false),
    ("LATCHKEY_PUBLIC_URL", false),
    ("LATCHKEY_DATABASE_URL", true),
    ("LATCHKEY_DATABASE_POOL_SIZE", false),
    ("LATCHKEY_DATABASE_TIMEOUT_MS", false),
    ("LATCHKEY_REDIS_URL", true),
    ("LATCHKEY_REDIS_KEY_PREFIX", false),
    ("LATCHKEY_STORE_TIMEOUT_MS", false),
    ("LATCHKEY_BOOTSTRAP_ADMIN_EMAIL", false),
    ("LATCHKEY_BOOTSTRAP_ADMIN_PASSWORD", true),
    ("LATCHKEY_CLOCK_LEEWAY_SECONDS", false),
    ("LATCHKEY_MASTER_KEY", true),
    ("LATCHKEY_DATA_DIR", false),
    ("LATCHKEY_LOG", false),
    ("LATCHKEY_LOG_FORMAT", false),
    ("LATCHKEY_ARGON2_MEMORY_KIB", false),
    ("LATCHKEY_ARGON2_ITERATIONS", false),
    ("LATCHKEY_ARGON2_PARALLELISM", false),
    ("LATCHKEY_WORKERS", false),
    ("LATCHKEY_SHUTDOWN_TIMEOUT_SECONDS", false),
    ("LATCHKEY_KEY_ACTIVATION_DELAY_SECONDS", false),
    ("LATCHKEY_KEY_ROTATION_DAYS", false),
    ("LATCHKEY_RATE_LIMIT_AUTH_PER_SECOND", false),
    ("LATCHKEY_RATE_LIMIT_AUTH_BURST", false),
    ("LATCHKEY_RATE_LIMIT_API_PER_SECOND", false),
    ("LATCHKEY_RATE_LIMIT_API_BURST", false),
    ("LATCHKEY_TRUSTED_PROXIES", false),
    ("LATCHKEY_MAX_BODY_BYTES", false),
    ("LATCHKEY_MAX_SESSIONS_PER_USER", false),
];

fn parse_num<T: std::str::FromStr>(variable: &str, raw: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    raw.trim()
        .parse::<T>()
        .map_err(|e| bad(variable, format!("{e} (got {raw:?})")))
}

impl Config {
    /// Loads the configuration from the process environment.
    /// `LATCHKEY_*` variables of `env` that latchkey does not read (a typo
    /// is otherwise ignored without a word).
    pub fn unknown_variables(env: &HashMap<String, String>) -> Vec<String> {
        let mut unknown: Vec<String> = env
            .keys()
            .filter(|k| k.starts_with("LATCHKEY_"))
            .filter(|k| {
                let base = k.strip_suffix("_FILE").unwrap_or(k);
                let secret_file = k.ends_with("_FILE")
                    && VARIABLES
                        .iter()
                        .any(|(name, secret)| *secret && *name == base);
                let known = VARIABLES.iter().any(|(name, _)| name == k);
                // Variables of the test and CI harnesses are not latchkey's.
                let harness = k.starts_with("LATCHKEY_TEST_") || k.starts_with("LATCHKEY_CI_");
                !(known || secret_file || harness || *k == "LATCHKEY_CONFIG")
            })
            .cloned()
            .collect();
        unknown.sort();
        unknown
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&std::env::vars().collect())
    }

    /// Loads the configuration from the given variables (the process
    /// environment in production, a map in tests).
    pub fn load(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = env.get("LATCHKEY_CONFIG") {
            if !std::path::Path::new(path).is_file() {
                return Err(bad("LATCHKEY_CONFIG", format!("no such file: {path}")));
            }
            figment = figment.merge(Toml::file(path));
        }
        let mut config: Config = figment.extract().map_err(|e| bad("LATCHKEY_CONFIG", e))?;

        for (variable, secret) in VARIABLES {
            let file_variable = format!("{variable}_FILE");
            let value = match (env.get(*variable), env.get(&file_variable)) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        variable,
                        format!("set either {variable} or {file_variable}, not both"),
                    ));
                }
                (Some(v), None) => v.clone(),
                (None, Some(path)) if *secret => std::fs::read_to_string(path)
                    .map_err(|e| bad(&file_variable, format!("cannot read {path}: {e}")))?
                    .trim_end_matches(['\n', '\r'])
                    .to_owned(),
                (None, Some(_)) => {
                    return Err(bad(&file_variable, "only secrets have a _FILE variant"));
                }
                (None, None) => continue,
            };
            config.set(variable, &value)?;
        }
        config.validate()?;
        Ok(config)
    }

    fn set(&mut self, variable: &str, raw: &str) -> Result<(), ConfigError> {
        let opt = |raw: &str| {
            let t = raw.trim();
            (!t.is_empty()).then(|| t.to_owned())
        };
        match variable {
            "LATCHKEY_BIND" => self.bind = raw.trim().to_owned(),
            "LATCHKEY_PUBLIC_URL" => self.public_url = opt(raw),
            "LATCHKEY_DATABASE_URL" => self.database_url = raw.trim().to_owned(),
            "LATCHKEY_DATABASE_POOL_SIZE" => self.database_pool_size = parse_num(variable, raw)?,
            "LATCHKEY_REDIS_URL" => self.redis_url = opt(raw),
            "LATCHKEY_REDIS_KEY_PREFIX" => self.redis_key_prefix = raw.trim().to_owned(),
            "LATCHKEY_DATABASE_TIMEOUT_MS" => self.database_timeout_ms = parse_num(variable, raw)?,
            "LATCHKEY_STORE_TIMEOUT_MS" => self.store_timeout_ms = parse_num(variable, raw)?,
            "LATCHKEY_BOOTSTRAP_ADMIN_EMAIL" => self.bootstrap_admin_email = opt(raw),
            "LATCHKEY_BOOTSTRAP_ADMIN_PASSWORD" => {
                self.bootstrap_admin_password = (!raw.is_empty()).then(|| Secret::new(raw))
            }
            "LATCHKEY_CLOCK_LEEWAY_SECONDS" => {
                self.clock_leeway_seconds = parse_num(variable, raw)?
            }
            "LATCHKEY_MASTER_KEY" => self.master_key = opt(raw).map(Secret::new),
            "LATCHKEY_DATA_DIR" => self.data_dir = raw.trim().to_owned(),
            "LATCHKEY_LOG" => self.log = raw.trim().to_owned(),
            "LATCHKEY_LOG_FORMAT" => {
                self.log_format = match raw.trim().to_ascii_lowercase().as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    other => {
                        return Err(bad(
                            variable,
                            format!("expected text or json, got {other:?}"),
                        ));
                    }
                }
            }
            "LATCHKEY_ARGON2_MEMORY_KIB" => self.argon2_memory_kib = parse_num(variable, raw)?,
            "LATCHKEY_ARGON2_ITERATIONS" => self.argon2_iterations = parse_num(variable, raw)?,
            "LATCHKEY_ARGON2_PARALLELISM" => self.argon2_parallelism = parse_num(variable, raw)?,
            "LATCHKEY_WORKERS" => self.workers = Some(parse_num(variable, raw)?),
            "LATCHKEY_SHUTDOWN_TIMEOUT_SECONDS" => {
                self.shutdown_timeout_seconds = parse_num(variable, raw)?
            }
            "LATCHKEY_KEY_ACTIVATION_DELAY_SECONDS" => {
                self.key_activation_delay_seconds = parse_num(variable, raw)?
            }
            "LATCHKEY_KEY_ROTATION_DAYS" => self.key_rotation_days = parse_num(variable, raw)?,
            "LATCHKEY_RATE_LIMIT_AUTH_PER_SECOND" => {
                self.rate_limit_auth_per_second = parse_num(variable, raw)?
            }
            "LATCHKEY_RATE_LIMIT_AUTH_BURST" => {
                self.rate_limit_auth_burst = parse_num(variable, raw)?
            }
            "LATCHKEY_RATE_LIMIT_API_PER_SECOND" => {
                self.rate_limit_api_per_second = parse_num(variable, raw)?
            }
            "LATCHKEY_RATE_LIMIT_API_BURST" => {
                self.rate_limit_api_burst = parse_num(variable, raw)?
            }
            "LATCHKEY_TRUSTED_PROXIES" => self.trusted_proxies = raw.trim().to_owned(),
            "LATCHKEY_MAX_BODY_BYTES" => self.max_body_bytes = parse_num(variable, raw)?,
            "LATCHKEY_MAX_SESSIONS_PER_USER" => {
                self.max_sessions_per_user = parse_num(variable, raw)?
            }
            _ => {}
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.bind
            .parse::<SocketAddr>()
            .map_err(|e| bad("LATCHKEY_BIND", format!("{e} (got {:?})", self.bind)))?;
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(bad(
                "LATCHKEY_PUBLIC_URL",
                "must start with http:// or https://",
            ));
        }
        crate::store::db::Backend::from_url(&self.database_url)
            .map_err(|e| bad("LATCHKEY_DATABASE_URL", e))?;
        if let Some(url) = &self.redis_url {
            crate::store::session::Topology::parse(url)
                .map_err(|e| bad("LATCHKEY_REDIS_URL", e))?;
        }
        if self.redis_key_prefix.is_empty()
            || !self
                .redis_key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err(bad(
                "LATCHKEY_REDIS_KEY_PREFIX",
                "letters, digits and - _ . : only",
            ));
        }
        if self.database_pool_size == 0 {
            return Err(bad("LATCHKEY_DATABASE_POOL_SIZE", "must be at least 1"));
        }
        if self.database_timeout_ms == 0 {
            return Err(bad("LATCHKEY_DATABASE_TIMEOUT_MS", "must be at least 1"));
        }
        if self.store_timeout_ms == 0 {
            return Err(bad("LATCHKEY_STORE_TIMEOUT_MS", "must be at least 1"));
        }
        if let Some(key) = &self.master_key {
            crate::authn::keys::MasterKey::parse(key.expose())
                .map_err(|e| bad("LATCHKEY_MASTER_KEY", e))?;
        }
        if let Some(email) = &self.bootstrap_admin_email {
            crate::domain::Email::parse(email)
                .map_err(|e| bad("LATCHKEY_BOOTSTRAP_ADMIN_EMAIL", e))?;
        }
        argon2::Params::new(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism,
            None,
        )
        .map_err(|e| {
            bad(
                "LATCHKEY_ARGON2_MEMORY_KIB",
                format!("argon2 parameters: {e}"),
            )
        })?;
        if self.key_activation_delay_seconds > 86_400 {
            return Err(bad(
                "LATCHKEY_KEY_ACTIVATION_DELAY_SECONDS",
                "at most 86400",
            ));
        }
        if self.key_rotation_days > 3650 {
            return Err(bad("LATCHKEY_KEY_ROTATION_DAYS", "at most 3650"));
        }
        for (variable, value) in [
            (
                "LATCHKEY_RATE_LIMIT_AUTH_PER_SECOND",
                self.rate_limit_auth_per_second,
            ),
            ("LATCHKEY_RATE_LIMIT_AUTH_BURST", self.rate_limit_auth_burst),
            (
                "LATCHKEY_RATE_LIMIT_API_PER_SECOND",
                self.rate_limit_api_per_second,
            ),
            ("LATCHKEY_RATE_LIMIT_API_BURST", self.rate_limit_api_burst),
        ] {
            if value == 0 {
                return Err(bad(
                    variable,
                    "must be at least 1 (rate limits cannot be turned off)",
                ));
            }
        }
        self.proxies()?;
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(bad("LATCHKEY_MAX_BODY_BYTES", "must be 1024 to 16777216"));
        }
        if !(1..=10_000).contains(&self.max_sessions_per_user) {
            return Err(bad("LATCHKEY_MAX_SESSIONS_PER_USER", "must be 1 to 10000"));
        }
        if self.shutdown_timeout_seconds == 0 {
            // actix reads 0 as "wait forever": a shutdown must be bounded.
            return Err(bad(
                "LATCHKEY_SHUTDOWN_TIMEOUT_SECONDS",
                "must be at least 1",
            ));
        }
        if self.workers == Some(0) {
            return Err(bad("LATCHKEY_WORKERS", "must be at least 1"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log).map_err(|e| bad("LATCHKEY_LOG", e))?;
        Ok(())
    }

    /// The public base URL, falling back to the bound address.
    pub fn public_url_or(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The parsed `LATCHKEY_TRUSTED_PROXIES`.
    pub fn proxies(&self) -> Result<crate::ratelimit::TrustedProxies, ConfigError> {
        crate::ratelimit::TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| bad("LATCHKEY_TRUSTED_PROXIES", e))
    }

    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(&self.data_dir)
    }

    /// The effective configuration with secrets masked, for `check-config`.
    pub fn masked(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            for key in ["database_url", "redis_url"] {
                if let Some(serde_json::Value::String(url)) = obj.get(key) {
                    let masked = mask_url_password(url);
                    obj.insert(key.to_owned(), serde_json::Value::String(masked));
                }
            }
        }
        v
    }
}

/// The masked configuration: URLs without passwords, secrets as `***`.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Config {}", self.masked())
    }
}

/// Hides the password part of `scheme://user:password@host`.
fn mask_url_password(url: &str) -> String {
    // A comma-separated list of URLs (Redis Cluster seed nodes): each one.
    if url.matches("://").count() > 1 {
        return url
            .split(',')
            .map(mask_url_password)
            .collect::<Vec<_>>()
            .join(",");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Config, mask_url_password};
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_need_no_configuration() {
        let c = Config::load(&HashMap::new()).expect("defaults are valid");
        assert_eq!(c.bind, "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://./data/latchkey.db");
        assert_eq!(c.clock_leeway_seconds, 30);
        assert!(c.redis_url.is_none());
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = Config::load(&env(&[("LATCHKEY_CLOCK_LEEWAY_SECONDS", "soon")]))
            .expect_err("not a number");
        assert_eq!(err.variable, "LATCHKEY_CLOCK_LEEWAY_SECONDS");
        let err = Config::load(&env(&[("LATCHKEY_DATABASE_URL", "mysql://x")]))
            .expect_err("unsupported backend");
        assert_eq!(err.variable, "LATCHKEY_DATABASE_URL");
        let err = Config::load(&env(&[("LATCHKEY_BIND", "nowhere")])).expect_err("bad bind");
        assert_eq!(err.variable, "LATCHKEY_BIND");
        let err = Config::load(&env(&[("LATCHKEY_MASTER_KEY", "short")])).expect_err("bad key");
        assert_eq!(err.variable, "LATCHKEY_MASTER_KEY");
        for url in [
            "redis+cluster://:s3cret@a:7000,,b:7001",
            "memcached://:s3cret@a:11211",
            "redis://:s3cret@a:7000,http://b:7001",
        ] {
            let err = Config::load(&env(&[("LATCHKEY_REDIS_URL", url)])).expect_err(url);
            assert_eq!(err.variable, "LATCHKEY_REDIS_URL");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
        for url in [
            "redis+cluster://a:7000,b:7001,c:7002",
            "rediss+cluster://user:pw@a:7000",
            "redis://a:7000,redis://b:7001",
        ] {
            Config::load(&env(&[("LATCHKEY_REDIS_URL", url)])).expect(url);
        }
    }

    #[test]
    fn toml_is_overridden_by_environment_and_secrets_come_from_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = dir.path().join("latchkey.toml");
        std::fs::write(
            &toml,
            "bind = \"127.0.0.1:9000\"\nredis_key_prefix = \"fromtoml\"\n",
        )
        .expect("write");
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "correct horse battery staple\n").expect("write");
        let c = Config::load(&env(&[
            ("LATCHKEY_CONFIG", toml.to_str().unwrap_or_default()),
            ("LATCHKEY_REDIS_KEY_PREFIX", "fromenv"),
            (
                "LATCHKEY_BOOTSTRAP_ADMIN_PASSWORD_FILE",
                secret.to_str().unwrap_or_default(),
            ),
        ]))
        .expect("valid");
        assert_eq!(c.bind, "127.0.0.1:9000");
        assert_eq!(c.redis_key_prefix, "fromenv");
        assert_eq!(
            c.bootstrap_admin_password.as_ref().map(|s| s.expose()),
            Some("correct horse battery staple")
        );
        let printed = c.masked().to_string();
        assert!(!printed.contains("horse"), "secret leaked: {printed}");
    }

    #[test]
    fn unknown_toml_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = dir.path().join("latchkey.toml");
        std::fs::write(&toml, "bnid = \"x\"\n").expect("write");
        let err = Config::load(&env(&[(
            "LATCHKEY_CONFIG",
            toml.to_str().unwrap_or_default(),
        )]))
        .expect_err("typo");
        assert_eq!(err.variable, "LATCHKEY_CONFIG");
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            mask_url_password("postgres://app:hunter2@db:5432/latchkey"),
            "postgres://app:***@db:5432/latchkey"
        );
        assert_eq!(
            mask_url_password("redis://cache:6379"),
            "redis://cache:6379"
        );
        assert_eq!(
            mask_url_password("redis://:s3cret@a:6379,redis://:s3cret@b:6379"),
            "redis://:***@a:6379,redis://:***@b:6379"
        );
        assert_eq!(
            mask_url_password("redis+cluster://u:s3cret@a:7000,b:7001"),
            "redis+cluster://u:***@a:7000,b:7001"
        );
    }

    #[test]
    fn debug_output_holds_no_secret_or_url_password() {
        let config = Config {
            database_url: "postgres://app:hunter2@db/latchkey".to_owned(),
            redis_url: Some("redis://:s3cret@cache:6379".to_owned()),
            master_key: Some(super::Secret::new("00".repeat(32))),
            bootstrap_admin_password: Some(super::Secret::new("correct horse")),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        for secret in ["hunter2", "s3cret", &"00".repeat(32), "correct horse"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("postgres://app:***@db/latchkey"), "{shown}");
    }

    #[test]
    fn misspelled_variables_are_reported_and_known_ones_are_not() {
        let env = env(&[
            ("LATCHKEY_BIND", "0.0.0.0:8080"),
            ("LATCHKEY_DATBASE_URL", "postgres://x"),
            ("LATCHKEY_MASTER_KEY_FILE", "/run/secrets/key"),
            ("LATCHKEY_BIND_FILE", "/nope"),
            ("LATCHKEY_TEST_REDIS_URL", "redis://x"),
            ("LATCHKEY_CONFIG", "/etc/latchkey.toml"),
            ("PATH", "/usr/bin"),
        ]);
        assert_eq!(
            Config::unknown_variables(&env),
            vec![
                "LATCHKEY_BIND_FILE".to_owned(),
                "LATCHKEY_DATBASE_URL".to_owned()
            ]
        );
    }
}
