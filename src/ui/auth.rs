//! Who may use the dashboard. Any local user can connect to a loopback
//! port, and any web page the user visits can make their browser send
//! requests to it, so every request passes three checks before a handler
//! sees it (docs/SECURITY.md, "The web dashboard"):
//!
//! 1. `Host` is one of the names the server is known by (`127.0.0.1:PORT`,
//!    `localhost:PORT`, `[::1]:PORT`, plus `--allow-host`): a DNS-rebinding
//!    page, whose requests carry its own name, is refused.
//! 2. `Origin`, when present (and it must be on anything but GET/HEAD), is
//!    `http(s)://` one of those names, and `Sec-Fetch-Site`, when present,
//!    is `same-origin` or `none`: another site's page, or a page on another
//!    port of this host, can neither read nor act.
//! 3. The request carries the session cookie. The only way to get it is
//!    the random token printed in the URL (`/?token=...`), which is
//!    exchanged for an HttpOnly, SameSite=Strict cookie and a redirect that
//!    takes the token out of the address bar.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles,
//! connections from this origin only; no inline script, no images from
//! anywhere else, no frames), `nosniff`, no referrer and no caching.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::App;

/// The policy every response carries. `img-src 'self'` only: agent output
/// can name no image to load; `connect-src 'self'`: the page's scripts
/// reach nothing but this server.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; font-src 'none'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The checks' settings: the secrets and the accepted host names.
pub(crate) struct Guard {
    /// The URL token.
    token: String,
    /// The cookie's value (a second random value: the cookie never holds
    /// the token that may sit in a shell's history).
    session: String,
    /// The cookie's name (per port: cookies do not tell ports apart, so two
    /// dashboards on one machine must not overwrite each other's).
    cookie_name: String,
    /// Accepted `Host` values, lowercase.
    hosts: Vec<String>,
}

/// `n` random bytes from the OS, as lowercase hex.
pub(crate) fn random_hex(n: usize) -> Result<String, String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness from the OS: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Guard {
    /// A guard for a loopback listener bound at `bound`.
    pub(crate) fn for_tcp(
        token: String,
        bound: SocketAddr,
        extra: &[String],
    ) -> Result<Guard, String> {
        let port = bound.port();
        let mut hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        hosts.extend(extra.iter().map(|h| h.to_ascii_lowercase()));
        Ok(Guard {
            token,
            session: random_hex(32)?,
            cookie_name: format!("stigmer_ui_{port}"),
            hosts,
        })
    }

    /// A guard for a Unix-socket listener behind a reverse proxy: the
    /// proxy's public names come from `--allow-host` (`localhost` is
    /// accepted too, for a proxy that rewrites Host to it).
    pub(crate) fn for_unix(token: String, extra: &[String]) -> Result<Guard, String> {
        let mut hosts = vec!["localhost".to_string()];
        hosts.extend(extra.iter().map(|h| h.to_ascii_lowercase()));
        Ok(Guard {
            token,
            session: random_hex(32)?,
            cookie_name: "stigmer_ui".into(),
            hosts,
        })
    }

    fn host_ok(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    /// `None`: no Origin header; else whether it names this server.
    fn origin_ok(&self, headers: &HeaderMap) -> Option<bool> {
        let origin = headers.get(header::ORIGIN)?;
        let Ok(origin) = origin.to_str() else {
            return Some(false);
        };
        let origin = origin.to_ascii_lowercase();
        let rest = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        Some(rest.is_some_and(|host| self.hosts.iter().any(|h| h == host)))
    }

    fn cookie_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| {
                name == self.cookie_name
                    && constant_time_eq(value.as_bytes(), self.session.as_bytes())
            })
    }

    fn token_in(&self, query: Option<&str>) -> Option<bool> {
        let query = query?;
        let value = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v)?;
        Some(constant_time_eq(value.as_bytes(), self.token.as_bytes()))
    }

    fn set_cookie(&self) -> String {
        // No Max-Age: a session cookie, gone when the browser closes; the
        // token changes with every `stigmer ui` anyway.
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie_name, self.session
        )
    }
}

/// Compares two secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        why,
    )
        .into_response()
}

/// The middleware in front of every route: the three checks, the token
/// exchange on `/?token=...`, and the security headers on every answer.
pub(crate) async fn check(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let mut response = gate(&app.guard, req, next).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn gate(guard: &Guard, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if !guard.host_ok(headers) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown Host: this dashboard answers only to the names it was started with\n",
        );
    }
    let safe = req.method() == Method::GET || req.method() == Method::HEAD;
    match guard.origin_ok(headers) {
        Some(false) => return refuse(StatusCode::FORBIDDEN, "foreign Origin\n"),
        None if !safe => return refuse(StatusCode::FORBIDDEN, "Origin required\n"),
        _ => {}
    }
    // Browsers say where a request comes from: only this origin's pages,
    // or the user typing the address or opening a link ("none"). A page
    // on another port of the same host is "same-site": refused too.
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| !matches!(v.as_bytes(), b"same-origin" | b"none"))
    {
        return refuse(StatusCode::FORBIDDEN, "request from another site\n");
    }
    if req.uri().path() == "/" && safe {
        match guard.token_in(req.uri().query()) {
            Some(true) => {
                // The exchange: a cookie, and the same page without the
                // token in its address.
                let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
                if let Ok(v) = HeaderValue::from_str(&guard.set_cookie()) {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
                return r;
            }
            Some(false) => return refuse(StatusCode::FORBIDDEN, "wrong token\n"),
            None => {}
        }
    }
    if !guard.cookie_ok(headers) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "not signed in: open the URL `stigmer ui` printed (it carries the token)\n",
        );
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::for_tcp("t0k".into(), "127.0.0.1:4000".parse().unwrap(), &[]).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hosts_are_the_bound_names_only() {
        let g = guard();
        assert!(g.host_ok(&headers(&[("host", "127.0.0.1:4000")])));
        assert!(g.host_ok(&headers(&[("host", "LOCALHOST:4000")])));
        assert!(!g.host_ok(&headers(&[("host", "evil.example:4000")])));
        assert!(!g.host_ok(&headers(&[("host", "127.0.0.1:4001")])));
        assert!(!g.host_ok(&headers(&[])));
    }

    #[test]
    fn origins_must_name_this_server() {
        let g = guard();
        assert_eq!(g.origin_ok(&headers(&[])), None);
        assert_eq!(
            g.origin_ok(&headers(&[("origin", "http://127.0.0.1:4000")])),
            Some(true)
        );
        assert_eq!(
            g.origin_ok(&headers(&[("origin", "http://evil.example")])),
            Some(false)
        );
        assert_eq!(g.origin_ok(&headers(&[("origin", "null")])), Some(false));
    }

    #[test]
    fn token_and_cookie_compare_exactly() {
        let g = guard();
        assert_eq!(g.token_in(Some("token=t0k")), Some(true));
        assert_eq!(g.token_in(Some("a=1&token=t0")), Some(false));
        assert_eq!(g.token_in(Some("a=1")), None);
        let cookie = format!("x=1; {}={}", g.cookie_name, g.session);
        assert!(g.cookie_ok(&headers(&[("cookie", &cookie)])));
        let wrong = format!("{}=nope", g.cookie_name);
        assert!(!g.cookie_ok(&headers(&[("cookie", &wrong)])));
        assert!(random_hex(32).unwrap().len() == 64);
    }
}
