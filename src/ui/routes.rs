//! The dashboard's routes, all behind `auth::check`: the three pages, the
//! embedded assets, the two event streams, cancel, and the daemon's status.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use super::{assets, auth, execution, list, App};

/// The router, with the auth layer in front of every route (the fallback
/// included).
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| page(assets::LIST_HTML)))
        .route("/executions/{id}", get(|| page(assets::EXECUTION_HTML)))
        .route("/daemon", get(|| page(assets::DAEMON_HTML)))
        .route("/assets/{name}", get(asset))
        .route("/api/watch", get(list::events))
        .route("/api/executions/{id}/events", get(execution::events))
        .route("/api/executions/{id}/cancel", post(execution::cancel))
        .route("/api/status", get(status))
        .route("/api/info", get(info))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::check,
        ))
        .with_state(app)
}

async fn page(html: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn asset(Path(name): Path<String>) -> Response {
    match assets::asset(&name) {
        Some((content_type, body)) => {
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /api/status`: what `stigmer status` shows, as canonical JSON.
async fn status(State(app): State<Arc<App>>) -> Response {
    match app.client.status(false).await {
        Ok(s) => match serde_json::to_string(&s) {
            Ok(body) => json_response(StatusCode::OK, body),
            Err(e) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "error": e.to_string() }).to_string(),
            ),
        },
        Err(e) => json_response(
            StatusCode::BAD_GATEWAY,
            json!({ "error": e.to_string() }).to_string(),
        ),
    }
}

/// `GET /api/info`: what the pages need to build commands to copy.
async fn info(State(app): State<Arc<App>>) -> Response {
    json_response(
        StatusCode::OK,
        json!({
            "socket": app.socket.display().to_string(),
            "version": env!("CARGO_PKG_VERSION"),
        })
        .to_string(),
    )
}
