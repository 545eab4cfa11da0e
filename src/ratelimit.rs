//! Per-client-IP rate limits (actix-governor), in two groups:
//!
//! - `auth`: the credential-guessing surface — token, revoke, introspect,
//!   signup and password change (SPEC §7: 10/s, burst 30 by default);
//! - `api`: every other route, admin and resource alike, with a higher limit.
//!
//! Health, readiness and metrics are never limited. The client IP is the
//! peer address, unless the peer is a trusted proxy: then the rightmost
//! `X-Forwarded-For` entry that is not itself a trusted proxy.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use actix_governor::governor::NotUntil;
use actix_governor::governor::clock::{Clock, DefaultClock, QuantaInstant};
use actix_governor::governor::middleware::NoOpMiddleware;
use actix_governor::{Governor, GovernorConfig, GovernorConfigBuilder, KeyExtractor};
use actix_web::dev::ServiceRequest;
use actix_web::http::header::HeaderMap;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};

use crate::error::{AppError, ErrorCode, Flavor};

/// A network, `address/prefix`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = canonical(
            addr.parse::<IpAddr>()
                .map_err(|_| format!("{s:?} is not an IP address or network"))?,
        );
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix must be 0 to {max}"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and networks.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Network::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client behind `peer`: the peer itself unless it is a trusted
    /// proxy; then the nearest `X-Forwarded-For` hop that is not one.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // A garbled entry ends what can be believed.
                return client;
            };
            client = canonical(ip);
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// Which limit a route falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Auth,
    Api,
}

/// The group of a (decoded) request path; `None` for routes never limited.
pub fn group_of(path: &str) -> Option<Group> {
    if matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return None;
    }
    match tenant_route(path) {
        Some(
            "oauth/token" | "oauth/revoke" | "oauth/introspect" | "signup" | "me/password"
            | "oauth/authorize" | "login" | "login/signup" | "oauth/end_session",
        ) => Some(Group::Auth),
        _ => Some(Group::Api),
    }
}

/// Whether a path is one of the hosted pages of SPEC §9 (HTML answers).
pub fn is_hosted_page(path: &str) -> bool {
    match tenant_route(path) {
        Some("oauth/authorize" | "oauth/end_session" | "login") => true,
        Some(route) => route.starts_with("login/"),
        None => false,
    }
}

/// What follows `/tenants/{t}/` in a path, without a trailing slash.
fn tenant_route(path: &str) -> Option<&str> {
    path.strip_prefix("/tenants/")
        .and_then(|rest| rest.split_once('/'))
        .map(|(_, tail)| tail.trim_end_matches('/'))
}

/// Whether a path is one of the endpoints that answer RFC 6749 errors
/// (token, revoke, introspect) rather than problem+json.
pub fn is_oauth_endpoint(path: &str) -> bool {
    matches!(
        tenant_route(path),
        Some("oauth/token" | "oauth/revoke" | "oauth/introspect")
    )
}

/// The error format of a path, for answers given before any handler runs.
pub fn flavor_of(path: &str) -> Flavor {
    if is_oauth_endpoint(path) {
        Flavor::OAuth
    } else if is_hosted_page(path) {
        Flavor::Html
    } else {
        Flavor::Problem
    }
}

/// The rate-limiting key: the client's address (IPv6 by its /64, which one
/// host can fill at will), or `Exempt` for requests of another group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    Exempt,
    Client(IpAddr),
}

/// Extracts the [`ClientKey`] of requests in one group.
#[derive(Debug, Clone)]
pub struct ClientIp {
    group: Group,
    proxies: TrustedProxies,
}

impl KeyExtractor for ClientIp {
    type Key = ClientKey;
    type KeyExtractionError = AppError;

    fn extract(&self, req: &ServiceRequest) -> Result<ClientKey, AppError> {
        if group_of(req.match_info().as_str()) != Some(self.group) {
            return Ok(ClientKey::Exempt);
        }
        let Some(peer) = req.peer_addr() else {
            // Only in-process test requests have no peer; they are not limited.
            return Ok(ClientKey::Exempt);
        };
        let ip = match self.proxies.client_ip(peer.ip(), req.headers()) {
            IpAddr::V6(v6) => {
                let net = u128::from(v6) & (u128::MAX << 64);
                IpAddr::V6(Ipv6Addr::from(net))
            }
            v4 => v4,
        };
        Ok(ClientKey::Client(ip))
    }

    fn exceed_rate_limit_response(
        &self,
        negative: &NotUntil<QuantaInstant>,
        _response: HttpResponseBuilder,
    ) -> HttpResponse {
        let wait = negative.wait_time_from(DefaultClock::default().now());
        // Retry-After counts whole seconds; never tell a client to retry at once.
        let seconds = u32::try_from(wait.as_millis().div_ceil(1000))
            .unwrap_or(u32::MAX)
            .max(1);
        crate::metrics::rate_limited(match self.group {
            Group::Auth => "auth",
            Group::Api => "api",
        });
        let route = crate::telemetry::current_request().route;
        let path = route.split_once(' ').map_or("", |(_, path)| path);
        AppError::new(
            ErrorCode::RateLimited,
            format!("Too many requests from this address; retry in {seconds} s."),
        )
        .with_retry_after(seconds)
        .in_flavor(flavor_of(path))
        .error_response()
    }

    fn whitelisted_keys(&self) -> Vec<ClientKey> {
        vec![ClientKey::Exempt]
    }
}

/// One group's limit: requests per second and burst.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub per_second: u32,
    pub burst: u32,
}

pub type Limiter = GovernorConfig<ClientIp, NoOpMiddleware>;

/// The shared limiter of one group (build once; every worker uses it).
pub fn limiter(group: Group, limit: Limit, proxies: &TrustedProxies) -> Option<Limiter> {
    let per_request = Duration::from_secs(1).as_nanos() / u128::from(limit.per_second.max(1));
    GovernorConfigBuilder::default()
        .nanoseconds_per_request(u64::try_from(per_request).unwrap_or(u64::MAX).max(1))
        .burst_size(limit.burst.max(1))
        .key_extractor(ClientIp {
            group,
            proxies: proxies.clone(),
        })
        .finish()
}

pub fn middleware(limiter: &Limiter) -> Governor<ClientIp, NoOpMiddleware> {
    Governor::new(limiter)
}

/// Forgets idle clients now and then, so the key maps do not grow forever.
pub fn spawn_cleanup(limiters: Vec<Limiter>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            for l in &limiters {
                let limiter = l.limiter();
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{Group, TrustedProxies, group_of};
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        h
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap_or_default();
        assert_eq!(
            proxies.client_ip(ip("203.0.113.9"), &xff("1.2.3.4")),
            ip("203.0.113.9")
        );
        assert_eq!(
            TrustedProxies::default().client_ip(ip("127.0.0.1"), &xff("1.2.3.4")),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.1").unwrap_or_default();
        // A client-supplied spoofed entry on the left is not believed.
        let h = xff("6.6.6.6, 198.51.100.7, 192.168.1.1");
        assert_eq!(proxies.client_ip(ip("10.1.2.3"), &h), ip("198.51.100.7"));
        // IPv4-mapped peers count as their IPv4 address.
        assert_eq!(
            proxies.client_ip(ip("::ffff:10.0.0.1"), &xff("198.51.100.8")),
            ip("198.51.100.8")
        );
        // Garbage ends the walk at the last believable address.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.1"), &xff("nonsense")),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn bad_proxy_lists_are_refused() {
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.local").is_err());
        assert!(TrustedProxies::parse("").is_ok_and(|p| p == TrustedProxies::default()));
        assert!(TrustedProxies::parse("::1, 2001:db8::/32").is_ok());
    }

    #[test]
    fn routes_fall_into_their_groups() {
        assert_eq!(group_of("/tenants/acme/oauth/token"), Some(Group::Auth));
        assert_eq!(
            group_of("/tenants/acme/oauth/introspect"),
            Some(Group::Auth)
        );
        assert_eq!(group_of("/tenants/acme/me/password"), Some(Group::Auth));
        assert_eq!(group_of("/tenants/acme/signup"), Some(Group::Auth));
        assert_eq!(group_of("/tenants/acme/oauth/userinfo"), Some(Group::Api));
        assert_eq!(group_of("/admin/tenants"), Some(Group::Api));
        assert_eq!(group_of("/healthz"), None);
        assert_eq!(group_of("/metrics"), None);
        assert!(super::is_oauth_endpoint("/tenants/acme/oauth/revoke"));
        assert!(!super::is_oauth_endpoint("/tenants/acme/oauth/userinfo"));
    }
}
