//! HTTP request guard: the daemon answers only to its own address and refuses cross-site writes.
//!
//! A browser on the operator's machine can be made to talk to the daemon by any web page:
//! through **DNS rebinding** (a hostile name that resolves to 127.0.0.1, so the page's origin
//! reads `/api/status`) and through **cross-site requests** (a form that POSTs to
//! `/api/refresh`). Two rules close both (issue #18, attack 11):
//!
//! 1. The `Host` header must name the listen address (the bound IP, `localhost` when bound to
//!    loopback, any IP literal when bound to all addresses), with the bound port when it has
//!    one, or a name given with `--allowed-host` (any port: behind a proxy). Otherwise `421
//!    Misdirected Request`: a rebinding page sends its own name.
//! 2. A request that changes state (any method but GET, HEAD, OPTIONS) must carry
//!    `Content-Type: application/json`, which a page cannot send cross-site without a CORS
//!    preflight the daemon never grants, and an `Origin`, when present, of the same host as
//!    rule 1 accepts. Otherwise `403 Forbidden`.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;

/// What the guard accepts: the bound address (known once the listener is bound) and the
/// operator's extra host names.
#[derive(Debug, Default)]
pub struct HostGuard {
    addr: OnceLock<SocketAddr>,
    names: Vec<String>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 421: the Host header names another server.
    MisdirectedHost(String),
    /// 403: a state-changing request a browser could have sent cross-site.
    CrossSite(String),
}

impl HostGuard {
    /// A guard accepting `names` (`--allowed-host`) besides the listen address.
    pub fn new(names: Vec<String>) -> HostGuard {
        HostGuard {
            addr: OnceLock::new(),
            names: names.into_iter().map(|n| n.trim().to_ascii_lowercase()).collect(),
        }
    }

    /// Records the address the listener is bound to (port 0 resolved).
    pub fn bound(&self, addr: SocketAddr) {
        let _ = self.addr.set(addr);
    }

    /// Whether `authority` (`host`, `host:port`, `[v6]:port`) names this server.
    fn accepts(&self, authority: &str) -> bool {
        let authority = authority.trim().to_ascii_lowercase();
        let (host, port) = split_authority(&authority);
        if self.names.iter().any(|n| n == host || *n == authority) {
            return true;
        }
        let Some(addr) = self.addr.get() else {
            return false;
        };
        if port.is_some_and(|p| p != addr.port()) {
            return false;
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => ip == addr.ip() || addr.ip().is_unspecified(),
            Err(_) => host == "localhost" && addr.ip().is_loopback(),
        }
    }

    /// Checks one request's method and headers.
    ///
    /// # Errors
    /// The [`Refusal`] with the reason sent back to the client.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let Some(host) = host else {
            return Err(Refusal::MisdirectedHost("the request has no Host header".to_string()));
        };
        if !self.accepts(host) {
            return Err(Refusal::MisdirectedHost(format!(
                "Host `{host}` is not this daemon's listen address; start the daemon with --allowed-host NAME to serve it under that name"
            )));
        }
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.split(';').next())
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(Refusal::CrossSite(format!(
                "{method} needs `Content-Type: application/json` (a browser cannot send it cross-site without a preflight)"
            )));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let same = origin
                .split_once("://")
                .map(|(_, rest)| rest.trim_end_matches('/'))
                .is_some_and(|authority| authority.eq_ignore_ascii_case(host.trim()) && self.accepts(authority));
            if !same {
                return Err(Refusal::CrossSite(format!(
                    "Origin `{origin}` is not this daemon; cross-site requests may not change state"
                )));
            }
        }
        Ok(())
    }
}

/// `host` and its port, if any, of an authority (IPv6 in brackets).
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, tail)) => (ip, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            // Not a port: an unusable authority, compared as a whole (and refused).
            Err(_) => (authority, Some(0)),
        },
        _ => (authority, None),
    }
}

/// The middleware: refuses with 421 or 403 and a one-line reason, else runs the route.
pub async fn check(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    match shared.guard.check(request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(Refusal::MisdirectedHost(reason)) => {
            tracing::warn!("HTTP request refused (421): {reason}");
            (StatusCode::MISDIRECTED_REQUEST, format!("{reason}\n")).into_response()
        }
        Err(Refusal::CrossSite(reason)) => {
            tracing::warn!("HTTP request refused (403): {reason}");
            (StatusCode::FORBIDDEN, format!("{reason}\n")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn guard(addr: &str, names: &[&str]) -> HostGuard {
        let g = HostGuard::new(names.iter().map(|s| s.to_string()).collect());
        g.bound(addr.parse().unwrap());
        g
    }

    #[test]
    fn host_must_name_the_listen_address_or_an_allowed_name() {
        let g = guard("127.0.0.1:8080", &["gantry.internal"]);
        let v6 = guard("[::1]:9000", &[]);
        let any = guard("0.0.0.0:8080", &[]);
        for (guard, host, ok) in [
            (&g, "127.0.0.1:8080", true),
            (&g, "127.0.0.1", true),
            (&g, "localhost:8080", true),
            (&g, "LOCALHOST:8080", true),
            (&g, "127.0.0.1:8081", false),
            (&g, "attacker.example", false),
            (&g, "attacker.example:8080", false),
            (&g, "10.0.0.1:8080", false),
            (&g, "gantry.internal", true),
            (&g, "gantry.internal:443", true),
            (&g, "127.0.0.1:80x", false),
            (&v6, "[::1]:9000", true),
            (&v6, "[::1]:9001", false),
            (&v6, "localhost:9000", true),
            (&any, "10.1.2.3:8080", true),
            (&any, "localhost:8080", false),
            (&any, "rebind.attacker.example:8080", false),
        ] {
            let result = guard.check(&Method::GET, &headers(&[("host", host)]));
            assert_eq!(result.is_ok(), ok, "{host}: {result:?}");
            if !ok {
                assert!(matches!(result, Err(Refusal::MisdirectedHost(_))), "{host}");
            }
        }
        assert!(matches!(
            g.check(&Method::GET, &HeaderMap::new()),
            Err(Refusal::MisdirectedHost(_))
        ));
    }

    #[test]
    fn state_changing_requests_need_json_and_the_same_origin() {
        let g = guard("127.0.0.1:8080", &[]);
        let host = ("host", "127.0.0.1:8080");
        let json = ("content-type", "application/json; charset=utf-8");
        for (pairs, ok) in [
            (vec![host, json], true),
            (vec![host, json, ("origin", "http://127.0.0.1:8080")], true),
            (vec![host], false),
            (vec![host, ("content-type", "text/plain")], false),
            (vec![host, ("content-type", "application/x-www-form-urlencoded")], false),
            (vec![host, json, ("origin", "https://attacker.example")], false),
            (vec![host, json, ("origin", "null")], false),
            (vec![host, json, ("origin", "http://localhost:8080")], false),
        ] {
            let result = g.check(&Method::POST, &headers(&pairs));
            assert_eq!(result.is_ok(), ok, "{pairs:?}: {result:?}");
        }
        // Reads need neither.
        assert!(g.check(&Method::GET, &headers(&[host])).is_ok());
    }
}
