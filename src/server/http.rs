//! The daemon's HTTP routes: `/healthz`, `/metrics`, `/api/status`, `/api/daemon`,
//! `POST /api/refresh`, `POST /api/hooks/git` (see `hooks`) and the status page `/`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{Shared, lock, page};

/// The routes, sharing the daemon's state.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/daemon", get(daemon))
        .route("/api/refresh", post(refresh))
        .route("/api/hooks/git", post(git_hook))
        .with_state(shared)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut text = lock(&shared.metrics).render();
    if let Some(cluster) = shared.cluster.get() {
        text.push_str(&cluster.render_metrics());
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The same document as `gantry status --format json`, computed now.
async fn status(State(shared): State<Arc<Shared>>) -> Response {
    let result = tokio::task::spawn_blocking(move || {
        let repo = crate::source::WatchedRepo::open(&shared.repo_path).map_err(|e| e.to_string())?;
        let report = crate::ops::status::status_report(&repo, None, shared.now()).map_err(|e| e.to_string())?;
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())
    })
    .await;
    match result {
        Ok(Ok(json)) => ([(header::CONTENT_TYPE, "application/json")], json + "\n").into_response(),
        Ok(Err(message)) => error(&message),
        Err(e) => error(&e.to_string()),
    }
}

/// What the daemon itself knows: last valid commit, an invalid tip and its errors, passes.
async fn daemon(State(shared): State<Arc<Shared>>) -> Response {
    let state = lock(&shared.daemon).clone();
    let mut value = serde_json::to_value(state).unwrap_or_default();
    if let (Some(cluster), Some(map)) = (shared.cluster.get(), value.as_object_mut()) {
        map.insert(
            "cluster".into(),
            serde_json::to_value(cluster.status()).unwrap_or_default(),
        );
    }
    axum::Json(value).into_response()
}

/// Fetches (with a remote) and reconciles now.
async fn refresh(State(shared): State<Arc<Shared>>) -> Response {
    shared.refresh.store(true, Ordering::SeqCst);
    shared.wake.notify_one();
    (StatusCode::ACCEPTED, "refresh scheduled\n").into_response()
}

/// A push delivery from a Git server: verified, then the same as `POST /api/refresh`.
async fn git_hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    match super::hooks::verify(&headers, &body, shared.webhook_secret.as_ref()) {
        Ok(sender) => {
            tracing::info!(?sender, "webhook delivery verified; fetching now");
            shared.refresh.store(true, Ordering::SeqCst);
            shared.wake.notify_one();
            (StatusCode::ACCEPTED, "refresh scheduled\n").into_response()
        }
        Err(why) => {
            tracing::warn!("webhook delivery refused: {why}");
            (StatusCode::UNAUTHORIZED, format!("{why}\n")).into_response()
        }
    }
}

async fn index(State(shared): State<Arc<Shared>>) -> Response {
    let result = tokio::task::spawn_blocking(move || page::render(&shared)).await;
    match result {
        Ok(Ok(html)) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Ok(Err(message)) => error(&message),
        Err(e) => error(&e.to_string()),
    }
}

fn error(message: &str) -> Response {
    tracing::warn!("HTTP request failed: {message}");
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{message}\n")).into_response()
}
