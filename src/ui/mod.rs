//! `stigmer ui`: a live web dashboard of the machine's executions, served by
//! a client process (never by the daemon). It connects to the daemon's
//! socket with the user's own credentials through `stigmer-client`, so the
//! daemon's access policy stays the one gate, and serves the pages over
//! HTTP on loopback (or on a Unix socket for a reverse proxy).
//!
//! One job per file:
//! - `auth`: the URL token exchanged for an HttpOnly, SameSite=Strict
//!   cookie, Host and Origin checks (DNS rebinding, cross-site requests),
//!   and the security headers (a strict Content-Security-Policy).
//! - `routes`: the router: pages, embedded assets, cancel, status.
//! - `assets`: the embedded HTML, ES modules and CSS (`src/ui/assets/`).
//! - `list`: the executions page's stream: one shared watch of every
//!   execution, summarised into rows, fanned out to tabs over SSE with
//!   resume by `Last-Event-ID`.
//! - `execution`: the execution page's stream: one resuming subscription
//!   per tab, relayed as whole states and append-only patches over SSE.
//! - `json`: what the browser receives: rows, states and patches, without
//!   the callback tokens.

mod assets;
mod auth;
mod execution;
mod json;
mod list;
mod routes;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use stigmer_client::Client;
use tokio_util::sync::CancellationToken;

/// Where the dashboard listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Listen {
    /// A loopback TCP address (port 0 picks a free one).
    Tcp(SocketAddr),
    /// A Unix socket, for a reverse proxy in front.
    Unix(PathBuf),
}

impl Listen {
    /// Parses `HOST:PORT` (a loopback address) or `unix:PATH`.
    pub(crate) fn parse(s: &str) -> Result<Listen, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path, e.g. unix:/run/user/1000/stigmer-ui.sock".into());
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        let addr: SocketAddr = if let Some(port) = s.strip_prefix("localhost:") {
            let port = port
                .parse()
                .map_err(|_| format!("{s:?}: the port is not a number"))?;
            SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port)
        } else {
            s.parse()
                .map_err(|_| format!("{s:?} is neither HOST:PORT nor unix:PATH"))?
        };
        if !addr.ip().is_loopback() {
            return Err(format!(
                "{s}: the dashboard serves on loopback only (127.0.0.1 or [::1]); \
                 to reach it from elsewhere, put a reverse proxy in front of --listen unix:PATH"
            ));
        }
        Ok(Listen::Tcp(addr))
    }
}

/// What `stigmer ui` was asked for.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Where to serve.
    pub(crate) listen: Listen,
    /// Open the URL in a browser.
    pub(crate) open_browser: bool,
    /// More `Host` names accepted (a reverse proxy's public name).
    pub(crate) allow_hosts: Vec<String>,
    /// The daemon's socket (shown in the "copy subscribe command" button).
    pub(crate) socket: PathBuf,
}

/// The state every handler shares.
pub(crate) struct App {
    pub(crate) client: Client,
    pub(crate) guard: auth::Guard,
    pub(crate) hub: Arc<list::Hub>,
    pub(crate) socket: PathBuf,
    /// Cancelled on SIGINT or SIGTERM: the event streams end with it (a
    /// graceful shutdown waits for every response to finish, and an event
    /// stream never would).
    pub(crate) shutdown: CancellationToken,
}

/// Serves the dashboard until SIGINT or SIGTERM. `client` is connected to
/// the daemon already; `announce` is called once with the URL to open (the
/// token included) as soon as the listener is bound.
pub(crate) async fn serve(
    client: Client,
    options: Options,
    announce: impl FnOnce(&str),
) -> Result<(), String> {
    let token = auth::random_hex(32)?;
    let hub = list::Hub::start(client.clone());
    let cancel = CancellationToken::new();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            shutdown_signal().await;
            cancel.cancel();
        }
    });
    let shutdown = cancel.clone().cancelled_owned();
    // The one App, once the listener (either kind) has made its guard.
    let socket = options.socket.clone();
    let app = move |guard| {
        Arc::new(App {
            client,
            guard,
            hub,
            socket,
            shutdown: cancel,
        })
    };
    match &options.listen {
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let bound = listener
                .local_addr()
                .map_err(|e| format!("cannot read the bound address: {e}"))?;
            let guard = auth::Guard::for_tcp(token.clone(), bound, &options.allow_hosts)?;
            let app = app(guard);
            let url = format!("http://{bound}/?token={token}");
            announce(&url);
            if options.open_browser {
                open_browser(&url);
            }
            axum::serve(listener, routes::router(app))
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(|e| format!("the HTTP server failed: {e}"))
        }
        Listen::Unix(path) => {
            // A stale socket file from an earlier run is replaced; anything
            // else at the path is left alone (bind fails on it).
            if std::fs::symlink_metadata(path)
                .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                .unwrap_or(false)
            {
                let _ = std::fs::remove_file(path);
            }
            let listener = tokio::net::UnixListener::bind(path)
                .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
            // Only the user (and a proxy running as them, or root) may
            // connect: the token is the gate, this is a second one.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("cannot make {} private: {e}", path.display()))?;
            let guard = auth::Guard::for_unix(token.clone(), &options.allow_hosts)?;
            let app = app(guard);
            announce(&format!(
                "unix:{} (open /?token={token} through your proxy)",
                path.display()
            ));
            let served = axum::serve(listener, routes::router(app))
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(|e| format!("the HTTP server failed: {e}"));
            let _ = std::fs::remove_file(path);
            served
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Opens `url` in the user's browser, best effort (`xdg-open`, or `open`
/// on macOS); a failure only means the user opens the printed URL.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let spawned = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        // Reap it in the background so it leaves no zombie.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => eprintln!("stigmer ui: could not start {opener} ({e}); open the URL yourself"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_accepts_loopback_and_unix_only() {
        assert_eq!(
            Listen::parse("127.0.0.1:0"),
            Ok(Listen::Tcp("127.0.0.1:0".parse().unwrap()))
        );
        assert_eq!(
            Listen::parse("localhost:8080"),
            Ok(Listen::Tcp("127.0.0.1:8080".parse().unwrap()))
        );
        assert!(matches!(Listen::parse("[::1]:9"), Ok(Listen::Tcp(_))));
        assert_eq!(
            Listen::parse("unix:/tmp/x.sock"),
            Ok(Listen::Unix("/tmp/x.sock".into()))
        );
        assert!(Listen::parse("0.0.0.0:80").is_err());
        assert!(Listen::parse("192.168.1.2:80").is_err());
        assert!(Listen::parse("unix:").is_err());
        assert!(Listen::parse("nonsense").is_err());
    }
}
