//! Newtypes and rules of the product: no I/O here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The reserved tenant of platform administrators.
pub const SYSTEM_TENANT: &str = "system";
/// The public client every tenant is created with.
pub const ADMIN_CLI: &str = "admin-cli";

/// A tenant slug: `^[a-z0-9][a-z0-9-]{1,62}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantSlug(String);

impl TenantSlug {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bytes = s.as_bytes();
        let ok = (2..=63).contains(&bytes.len())
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err("must match ^[a-z0-9][a-z0-9-]{1,62}$".to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantSlug {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<TenantSlug> for String {
    fn from(s: TenantSlug) -> String {
        s.0
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An e-mail address: trimmed, domain lower-cased, validated. Compared
/// case-insensitively as a whole through [`Email::normalized`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        // RFC 6532 §3.1: addresses compare in normalization form C.
        let normalized: String = {
            use unicode_normalization::UnicodeNormalization;
            raw.trim().nfc().collect()
        };
        let s = normalized.as_str();
        if s.len() > 254 {
            return Err("must be at most 254 characters".to_owned());
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err("must be an e-mail address".to_owned());
        };
        let valid_local = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && local.chars().all(|c| !c.is_whitespace() && !c.is_control());
        let valid_domain = !domain.is_empty()
            && domain.len() <= 253
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !(valid_local && valid_domain) {
            return Err("must be an e-mail address".to_owned());
        }
        Ok(Self(format!("{local}@{}", domain.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The comparison key: the whole address lower-cased.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Suspended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    Confidential,
    Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// OAuth 2.0 authorization code with PKCE (RFC 6749 §4.1, RFC 7636).
    AuthorizationCode,
    Password,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::Password => "password",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

/// Token signing algorithms a tenant may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum SigningAlg {
    ES256,
    EdDSA,
    RS256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
            Self::RS256 => "RS256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(Self::ES256),
            "EdDSA" => Some(Self::EdDSA),
            "RS256" => Some(Self::RS256),
            _ => None,
        }
    }
}

/// Per-tenant settings (SPEC §3); every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    pub self_signup: bool,
    pub access_token_ttl_seconds: u64,
    pub refresh_token_ttl_seconds: u64,
    pub refresh_idle_timeout_seconds: u64,
    pub refresh_grace_seconds: u64,
    pub signing_alg: SigningAlg,
    pub password_min_length: u32,
    pub lockout_threshold: u32,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            self_signup: false,
            access_token_ttl_seconds: 900,
            refresh_token_ttl_seconds: 604_800,
            refresh_idle_timeout_seconds: 86_400,
            refresh_grace_seconds: 10,
            signing_alg: SigningAlg::ES256,
            password_min_length: 12,
            lockout_threshold: 10,
        }
    }
}

/// Upper bound of every lifetime setting: ten years.
const MAX_SECONDS: u64 = 10 * 365 * 24 * 3600;

impl TenantSettings {
    /// Checks the ranges; names the offending field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = |field: &'static str, v: u64| {
            if v == 0 || v > MAX_SECONDS {
                Err((field, format!("must be between 1 and {MAX_SECONDS}")))
            } else {
                Ok(())
            }
        };
        positive(
            "settings.access_token_ttl_seconds",
            self.access_token_ttl_seconds,
        )?;
        positive(
            "settings.refresh_token_ttl_seconds",
            self.refresh_token_ttl_seconds,
        )?;
        positive(
            "settings.refresh_idle_timeout_seconds",
            self.refresh_idle_timeout_seconds,
        )?;
        if self.refresh_grace_seconds > 3600 {
            return Err((
                "settings.refresh_grace_seconds",
                "must be at most 3600".to_owned(),
            ));
        }
        if !(1..=128).contains(&self.password_min_length) {
            return Err((
                "settings.password_min_length",
                "must be between 1 and 128".to_owned(),
            ));
        }
        if self.lockout_threshold == 0 || self.lockout_threshold > 1000 {
            return Err((
                "settings.lockout_threshold",
                "must be between 1 and 1000".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Why a password was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeakPassword(pub String);

/// Longest password accepted, in characters.
pub const PASSWORD_MAX_CHARS: usize = 128;

/// The password policy of SPEC §4: length bounds in characters, no
/// composition rules, guessable passwords refused by a strength estimator.
pub fn check_password(
    password: &str,
    min_length: u32,
    user_inputs: &[&str],
) -> Result<(), WeakPassword> {
    let normalized: String = {
        use unicode_normalization::UnicodeNormalization;
        password.nfc().collect()
    };
    let password = normalized.as_str();
    let chars = password.chars().count();
    if chars < min_length as usize {
        return Err(WeakPassword(format!(
            "The password must be at least {min_length} characters long."
        )));
    }
    if chars > PASSWORD_MAX_CHARS {
        return Err(WeakPassword(format!(
            "The password must be at most {PASSWORD_MAX_CHARS} characters long."
        )));
    }
    let entropy = zxcvbn::zxcvbn(password, user_inputs);
    if u8::from(entropy.score()) < 3 {
        let reason = entropy
            .feedback()
            .and_then(|f| f.warning().map(|w| w.to_string()))
            .unwrap_or_else(|| "The password is too easy to guess.".to_owned());
        return Err(WeakPassword(format!(
            "{reason} Use a longer passphrase of unrelated words."
        )));
    }
    Ok(())
}

/// Why a redirect URI cannot be registered.
pub const REDIRECT_URI_RULE: &str = "each must be an https URL, an http URL of a loopback IP \
    literal (http://127.0.0.1/..., http://[::1]/...), an http URL while the public URL is http, \
    or a private-use scheme of a reverse domain name (com.example.app:/callback); the characters of \
    RFC 3986 without fragment, at most 2000 characters";

/// The characters RFC 3986 allows in a URI (unreserved, reserved, `%`),
/// but `#` (no fragment), `[` and `]`: no `\\`, quote, angle bracket,
/// brace, `|`, `^` or backtick, which browsers and parsers read differently.
fn plain_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?@!$&'()*+,;=%".contains(&b)
}

/// The loopback literal an `http://` URI names (`127.0.0.1` or `[::1]`),
/// with the rest after its optional port: `(host, rest)`.
fn loopback_parts(uri: &str) -> Option<(&'static str, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let (host, after) = if let Some(r) = rest.strip_prefix("127.0.0.1") {
        ("127.0.0.1", r)
    } else if let Some(r) = rest.strip_prefix("[::1]") {
        ("[::1]", r)
    } else {
        return None;
    };
    let after = match after.strip_prefix(':') {
        Some(port) => {
            let digits = port.bytes().take_while(u8::is_ascii_digit).count();
            // A port is 1 to 65535, written without leading zeros.
            let valid = (1..=5).contains(&digits)
                && !port.starts_with('0')
                && port[..digits].parse::<u16>().is_ok_and(|p| p > 0);
            if !valid {
                return None;
            }
            &port[digits..]
        }
        None => after,
    };
    (after.is_empty() || after.starts_with('/')).then_some((host, after))
}

/// Whether a client may register `uri` as a redirect (SPEC §9, RFC 8252
/// §7.1 and §7.3): `https`; `http` for a loopback IP literal, or for any
/// host while `https_required` is false; or a private-use scheme named by a
/// reverse domain (`com.example.app:/callback`).
pub fn redirect_uri_allowed(uri: &str, https_required: bool) -> bool {
    if uri.len() > 2000 {
        return false;
    }
    if loopback_parts(uri).is_some_and(|(_, rest)| rest.bytes().all(plain_uri_char)) {
        return true;
    }
    if let Some(rest) = uri.strip_prefix("https://") {
        return !rest.is_empty() && rest.bytes().all(plain_uri_char);
    }
    if let Some(rest) = uri.strip_prefix("http://") {
        return !https_required && !rest.is_empty() && rest.bytes().all(plain_uri_char);
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let labels: Vec<&str> = scheme.split('.').collect();
    labels.len() >= 2
        && scheme.as_bytes()[0].is_ascii_lowercase()
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'+')
        })
        && rest.starts_with('/')
        && rest.bytes().all(plain_uri_char)
}

/// Whether a requested redirect URI matches a registered one: the same
/// string, or the same loopback IP literal URI on any port (RFC 8252 §7.3).
pub fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    matches!(
        (loopback_parts(registered), loopback_parts(requested)),
        (Some(a), Some(b)) if a == b
    )
}

/// The web origin (RFC 6454) of an `http`/`https` redirect URI:
/// `scheme://host[:port]`, lowercase, default port left out; `None` for
/// private-use schemes and for hosts with characters no origin has.
pub fn web_origin(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit('@').next()?.to_ascii_lowercase();
    if host_port.is_empty()
        || !host_port
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    {
        return None;
    }
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host_port = host_port.strip_suffix(default_port).unwrap_or(&host_port);
    Some(format!("{scheme}://{host_port}"))
}

/// The origin a browser sends for a page reached through a redirect URI:
/// its web origin, or `scheme:` for a private-use scheme (a CSP source).
pub fn redirect_target_source(uri: &str) -> Option<String> {
    if let Some(origin) = web_origin(uri) {
        return Some(origin);
    }
    let (scheme, _) = uri.split_once(':')?;
    (!scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b)))
    .then(|| format!("{scheme}:"))
}

/// The origins browser applications of a tenant run at: those of its
/// clients' `http`/`https` redirect URIs, and any port of a loopback IP
/// literal that is registered (RFC 8252 §7.3 lets it change per run).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WebOrigins {
    exact: std::collections::HashSet<String>,
    loopback: std::collections::HashSet<&'static str>,
}

impl WebOrigins {
    pub fn of(redirect_uris: &[String]) -> Self {
        let mut origins = Self::default();
        for uri in redirect_uris {
            if let Some((host, _)) = loopback_parts(uri) {
                origins.loopback.insert(host);
            } else if let Some(origin) = web_origin(uri) {
                origins.exact.insert(origin);
            }
        }
        origins
    }

    /// Whether an `Origin` header names one of them.
    pub fn allows(&self, origin: &str) -> bool {
        if self.exact.contains(origin) {
            return true;
        }
        loopback_parts(origin)
            .is_some_and(|(host, rest)| rest.is_empty() && self.loopback.contains(host))
    }
}

/// A UTC time as RFC 3339 with whole seconds (`2026-11-30T18:46:51Z`), as
/// every body shows times.
pub fn rfc3339(t: chrono::NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::{Email, TenantSettings, TenantSlug, check_password};

    #[test]
    fn slugs_follow_the_pattern() {
        assert!(TenantSlug::parse("acme").is_ok());
        assert!(TenantSlug::parse("a1-b2").is_ok());
        assert!(TenantSlug::parse("a").is_err());
        assert!(TenantSlug::parse("-acme").is_err());
        assert!(TenantSlug::parse("Acme").is_err());
        assert!(TenantSlug::parse("acme_corp").is_err());
        assert!(TenantSlug::parse(&"a".repeat(64)).is_err());
        assert!(TenantSlug::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn emails_are_trimmed_and_compared_case_insensitively() {
        let a = Email::parse("  Alice@Example.COM ").expect("valid");
        assert_eq!(a.as_str(), "Alice@example.com");
        let b = Email::parse("alice@example.com").expect("valid");
        assert_eq!(a.normalized(), b.normalized());
        assert!(Email::parse("no-at-sign").is_err());
        assert!(Email::parse("a@b").is_err());
        assert!(Email::parse("a b@example.com").is_err());
        assert!(Email::parse("@example.com").is_err());
    }

    #[test]
    fn guessable_and_short_passwords_are_weak() {
        assert!(check_password("password1234", 12, &[]).is_err());
        assert!(check_password("short", 12, &[]).is_err());
        assert!(check_password(&"x".repeat(129), 12, &[]).is_err());
        assert!(check_password("correct horse battery staple", 12, &[]).is_ok());
        assert!(check_password("ünïcødé pässwörd çafé 🦀", 12, &[]).is_ok());
    }

    #[test]
    fn default_settings_match_the_spec() {
        let s = TenantSettings::default();
        assert_eq!(s.access_token_ttl_seconds, 900);
        assert_eq!(s.refresh_token_ttl_seconds, 604_800);
        assert_eq!(s.refresh_idle_timeout_seconds, 86_400);
        assert_eq!(s.refresh_grace_seconds, 10);
        assert_eq!(s.password_min_length, 12);
        assert_eq!(s.lockout_threshold, 10);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn native_and_loopback_redirects_are_registrable_and_match_exactly() {
        use super::{redirect_uri_allowed, redirect_uri_matches};
        for ok in [
            "https://app.example.com/callback",
            "http://127.0.0.1/callback",
            "http://127.0.0.1:8400/callback?x=1",
            "http://[::1]:51004/cb",
            "com.example.app:/callback",
            "com.googleusercontent.apps.123-abc:/oauth2redirect",
        ] {
            assert!(redirect_uri_allowed(ok, true), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "data:text/html,hi",
            "myapp:/callback",
            "Com.Example:/cb",
            "com.example.app:callback",
            "https://app.example.com/cb#frag",
            "https://",
            "http://[::2]/cb",
            "ftp://example.com/cb",
        ] {
            assert!(!redirect_uri_allowed(bad, false), "{bad}");
        }
        // Not a loopback literal (empty port): only while http is allowed.
        assert!(!redirect_uri_allowed("http://127.0.0.1:/cb", true));
        for port in ["0", "00009", "99999", "65536"] {
            let uri = format!("http://127.0.0.1:{port}/cb");
            assert!(!redirect_uri_matches("http://127.0.0.1/cb", &uri), "{uri}");
        }
        assert!(redirect_uri_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:65535/cb"
        ));
        for bad in [
            "https://a.example\\@b.example/cb",
            "https://a.example/<x>",
            "https://a.example/{x}",
        ] {
            assert!(!redirect_uri_allowed(bad, true), "{bad}");
        }
        assert!(redirect_uri_allowed("http://localhost:3000/cb", false));
        assert!(!redirect_uri_allowed("http://localhost:3000/cb", true));
        assert!(redirect_uri_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:6123/cb"
        ));
        assert!(redirect_uri_matches(
            "http://[::1]:80/cb",
            "http://[::1]:9/cb"
        ));
        assert!(!redirect_uri_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:6123/cb2"
        ));
        assert!(!redirect_uri_matches(
            "http://127.0.0.1/cb",
            "http://[::1]/cb"
        ));
        assert!(!redirect_uri_matches(
            "https://a.example/cb",
            "https://a.example/cb/"
        ));
        assert!(!redirect_uri_matches(
            "http://localhost/cb",
            "http://localhost:99/cb"
        ));
        assert!(redirect_uri_matches(
            "com.example.app:/cb",
            "com.example.app:/cb"
        ));
    }
}
