//! The daemon's HTTP routes: `/healthz`, `/metrics`, `/api/status`, `/api/versions/<target>`,
//! `/api/daemon`, `/api/events` (server-sent events, see `stream`),
//! `POST /api/refresh`, `POST /api/hooks/git` (see `hooks`) and the status page `/`, and the
//! server that bounds what clients can hold (SPEC §8 "Limits"): at most [`MAX_CONNECTIONS`] open
//! connections (a new one closes the one quiet for longest), request headers within
//! [`HEADER_READ_TIMEOUT`] (which also closes idle keep-alive connections) and
//! [`MAX_HEADER_BYTES`], bodies up to [`MAX_BODY_BYTES`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{Shared, lock, page};

/// Open connections at most; the next one closes the connection that has been quiet longest.
pub const MAX_CONNECTIONS: usize = 256;
/// A client must send a request's whole header within this time, and an idle keep-alive
/// connection is closed after it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Request line and headers together.
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// Request bodies: only `POST /api/hooks/git` reads one (a push event); axum's own limit for
/// a body read whole is the same 2 MiB.
pub const MAX_BODY_BYTES: u64 = 2 << 20;

/// The routes, sharing the daemon's state.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/view/{key}/{value}", get(label_view))
        .route("/targets/{target}", get(target_page))
        .route("/api/status", get(status))
        .route("/api/versions/{target}", get(versions))
        .route("/api/daemon", get(daemon))
        .route("/api/events", get(events))
        .route("/api/refresh", post(refresh))
        // Host and cross-site checks (`guard`) for every route above; the Git webhook below
        // comes from a Git server under its public name and is authenticated by its HMAC.
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            super::guard::check,
        ))
        .route("/api/hooks/git", post(git_hook))
        .layer(axum::middleware::from_fn(limit_body))
        .with_state(shared)
}

/// Refuses a declared body over [`MAX_BODY_BYTES`] before any handler runs.
async fn limit_body(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {MAX_BODY_BYTES} bytes\n"),
        )
            .into_response();
    }
    next.run(request).await
}

/// One open connection as the server tracks it.
struct Conn {
    /// Milliseconds since the server started, at the last byte read or written.
    last_active: AtomicU64,
    /// Told to close when a newer connection needs the slot.
    evict: tokio::sync::Notify,
}

/// The open connections, to find the one quiet for longest.
struct Conns {
    started: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Conns {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Registers a connection; when that makes more than `max`, tells the quietest to close.
    fn admit(&self, max: usize) -> (u64, Arc<Conn>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            last_active: AtomicU64::new(self.now_ms()),
            evict: tokio::sync::Notify::new(),
        });
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.insert(id, Arc::clone(&conn));
        if open.len() > max {
            Self::evict_quietest(&mut open, Some(id));
        }
        (id, conn)
    }

    /// Tells the connection quiet for longest (other than `keep`) to close, and forgets it.
    fn evict_quietest(open: &mut HashMap<u64, Arc<Conn>>, keep: Option<u64>) {
        let quietest = open
            .iter()
            .filter(|(id, _)| Some(**id) != keep)
            .min_by_key(|(id, c)| (c.last_active.load(Ordering::Relaxed), **id))
            .map(|(id, _)| *id);
        if let Some(victim) = quietest.and_then(|v| open.remove(&v)) {
            // `notify_one` keeps a permit, so a task not yet waiting still sees it.
            victim.evict.notify_one();
        }
    }

    fn forget(&self, id: u64) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}

/// A connection's stream, stamping every read and write as activity.
struct Tracked {
    inner: TcpStream,
    conn: Arc<Conn>,
    conns: Arc<Conns>,
}

impl Tracked {
    fn touch(&self) {
        self.conn.last_active.store(self.conns.now_ms(), Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        result
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in flight finish.
///
/// # Guarantees
/// Whatever clients do, the server holds at most [`MAX_CONNECTIONS`] connections (plus the one
/// being admitted), never stops accepting (running out of file descriptors closes the quietest
/// connection instead of pausing), and closes a connection whose request header has not
/// arrived within [`HEADER_READ_TIMEOUT`]. So idle or slow clients cannot keep `/healthz` from
/// answering.
pub async fn serve(listener: TcpListener, app: Router, shutdown: impl std::future::Future<Output = ()>) {
    let conns = Arc::new(Conns {
        started: Instant::now(),
        next_id: AtomicU64::new(0),
        open: Mutex::new(HashMap::new()),
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_HEADER_BYTES.max(8192) * 2);
    let builder = Arc::new(builder);
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors: free one by closing the quietest connection and go
                // on at once; pausing would stall every client, not only the greedy one.
                let out_of_fds = matches!(e.raw_os_error(), Some(nix::libc::EMFILE | nix::libc::ENFILE));
                if out_of_fds {
                    Conns::evict_quietest(&mut conns.open.lock().unwrap_or_else(|p| p.into_inner()), None);
                    // Let the evicted connection's task run and close its descriptor.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                } else {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        let (id, conn) = conns.admit(MAX_CONNECTIONS);
        let io = hyper_util::rt::TokioIo::new(Tracked {
            inner: stream,
            conn: Arc::clone(&conn),
            conns: Arc::clone(&conns),
        });
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let builder = Arc::clone(&builder);
        let conns = Arc::clone(&conns);
        let mut closing_rx = closing_rx.clone();
        tokio::spawn(async move {
            let connection = builder.serve_connection(io, service);
            let mut connection = std::pin::pin!(connection);
            let mut draining = false;
            loop {
                tokio::select! {
                    _ = connection.as_mut() => break,
                    () = conn.evict.notified() => break,
                    changed = closing_rx.changed(), if !draining => {
                        if changed.is_err() || *closing_rx.borrow() {
                            draining = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
            conns.forget(id);
        });
    }
    let _ = closing.send(true);
    // Requests in flight finish (each task ends when its connection does); new ones are not
    // accepted. Wait a moment for them, as `axum::serve`'s graceful shutdown does.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && conns.open.lock().map(|o| !o.is_empty()).unwrap_or(false) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

/// The same document as `gantry status --format json` (the daemon's cached status).
///
/// `?selector=KEY=VALUE[,KEY=VALUE…]` keeps the targets whose labels have every pair
/// (400 for a malformed selector).
async fn status(State(shared): State<Arc<Shared>>, query: axum::extract::RawQuery) -> Response {
    let selector = match status_selector(query.0.as_deref()) {
        Ok(selector) => selector,
        Err(message) => return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    };
    let result = tokio::task::spawn_blocking(move || {
        // The daemon's status (`status_cache`): recomputed only when its inputs moved.
        let snapshot = shared.status.current(&shared)?;
        let report = &snapshot.report;
        if selector.is_empty() {
            return serde_json::to_string_pretty(report).map_err(|e| e.to_string());
        }
        let targets: Vec<crate::ops::status::TargetStatusRow> = report
            .targets
            .iter()
            .filter(|row| selector.matches(&row.labels))
            .cloned()
            .collect();
        let selected: std::collections::BTreeSet<String> = targets.iter().map(|t| t.target.clone()).collect();
        let mut schedule = report.schedule.clone();
        if let Some(schedule) = &mut schedule {
            schedule.retain_targets(&selected);
        }
        let filtered = crate::ops::status::StatusReport {
            targets,
            rollouts: report.rollouts.clone(),
            trust_anchor: report.trust_anchor.clone(),
            desired_commit: report.desired_commit.clone(),
            state_commit: report.state_commit.clone(),
            now: report.now.clone(),
            valid: report.valid,
            schedule,
            timeline: None,
        };
        serde_json::to_string_pretty(&filtered).map_err(|e| e.to_string())
    })
    .await;
    match result {
        Ok(Ok(json)) => ([(header::CONTENT_TYPE, "application/json")], json + "\n").into_response(),
        Ok(Err(message)) => error(&message),
        Err(e) => error(&e.to_string()),
    }
}

/// The same document as `gantry versions TARGET --format json`, computed now; 404 for a target
/// the desired state does not declare.
async fn versions(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(target): axum::extract::Path<String>,
) -> Response {
    let result = tokio::task::spawn_blocking(move || {
        let repo = crate::source::WatchedRepo::open(&shared.repo_path).map_err(crate::ops::OpsError::from)?;
        crate::ops::versions::versions(&repo, &target, shared.now())
    })
    .await;
    match result {
        Ok(Ok(report)) => match serde_json::to_string_pretty(&report) {
            Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json + "\n").into_response(),
            Err(e) => error(&e.to_string()),
        },
        Ok(Err(e @ crate::ops::OpsError::UnknownTarget { .. })) => {
            (StatusCode::NOT_FOUND, format!("{e}\n")).into_response()
        }
        Ok(Err(e)) => error(&crate::error_chain(&e)),
        Err(e) => error(&e.to_string()),
    }
}

/// The `selector` query parameter of `/api/status`: comma-separated `KEY=VALUE` pairs.
fn status_selector(query: Option<&str>) -> Result<crate::ops::agents::Selector, String> {
    let mut pairs = Vec::new();
    for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if name != "selector" {
            continue;
        }
        let value = percent_decode(value).ok_or_else(|| format!("selector `{value}` is not valid percent-encoding"))?;
        for pair in value.split(',').filter(|p| !p.trim().is_empty()) {
            pairs.push(crate::ops::agents::Selector::parse_pair(pair)?);
        }
    }
    Ok(crate::ops::agents::Selector(pairs))
}

/// `%3D` → `=`, `+` → space; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
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

/// The passes' progress as server-sent events (`stream`): after `Last-Event-ID` when the
/// client sends one; 503 once the daemon is stopping.
async fn events(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(stream) = shared.events.subscribe(last) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping\n").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            // nginx buffers responses unless told not to; a buffered stream arrives late.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
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

/// The page's query: `selector` (as `/api/status`), `component`, `state`, `page` (1-based).
fn page_query(query: Option<&str>) -> Result<page::PageQuery, String> {
    let mut out = page::PageQuery {
        selector: status_selector(query)?,
        page: 1,
        ..page::PageQuery::default()
    };
    for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        let decoded = || percent_decode(value).ok_or_else(|| format!("{name} `{value}` is not valid percent-encoding"));
        match name {
            "component" if !value.is_empty() => out.component = Some(decoded()?),
            "state" if !value.is_empty() => out.state = Some(decoded()?),
            "group" if !value.is_empty() => out.group = Some(decoded()?),
            "page" => {
                out.page = value
                    .parse::<usize>()
                    .ok()
                    .filter(|p| *p >= 1)
                    .ok_or_else(|| format!("page `{value}` is not a page number (1, 2, …)"))?;
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The status page; `ETag` is a digest of the body, and a request whose `If-None-Match` has it
/// gets `304 Not Modified` and no body.
async fn index(State(shared): State<Arc<Shared>>, headers: HeaderMap, query: axum::extract::RawQuery) -> Response {
    let query = match page_query(query.0.as_deref()) {
        Ok(query) => query,
        Err(message) => return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    };
    let result = tokio::task::spawn_blocking(move || page::render(&shared, &query)).await;
    html_response(&headers, result.map_err(|e| e.to_string()))
}

/// A customer-facing view of the targets with one label value (`/view/tenant/acme`): only
/// their rows, schedule and rollouts, nothing of other targets (issue #15).
async fn label_view(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::extract::Path((key, value)): axum::extract::Path<(String, String)>,
) -> Response {
    let result = tokio::task::spawn_blocking(move || super::views::label_view(&shared, &key, &value)).await;
    match result {
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, "no target has that label value\n").into_response(),
        Ok(Ok(Some(html))) => html_response(&headers, Ok(Ok(html))),
        Ok(Err(message)) => error(&message),
        Err(e) => error(&e.to_string()),
    }
}

/// One target's page: its versions, rollback points and history (`/targets/NAME`).
async fn target_page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::extract::Path(target): axum::extract::Path<String>,
) -> Response {
    let result = tokio::task::spawn_blocking(move || super::views::target_page(&shared, &target)).await;
    match result {
        Ok(Err(crate::ops::OpsError::UnknownTarget { target, .. })) => {
            (StatusCode::NOT_FOUND, format!("unknown target `{target}`\n")).into_response()
        }
        Ok(other) => html_response(&headers, Ok(other.map_err(|e| crate::error_chain(&e)))),
        Err(e) => error(&e.to_string()),
    }
}

/// An HTML page with an `ETag` (a digest of the body); a request whose `If-None-Match` has it
/// gets `304 Not Modified` and no body.
fn html_response(headers: &HeaderMap, result: Result<Result<String, String>, String>) -> Response {
    match result {
        Ok(Ok(html)) => {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(html.as_bytes());
            let etag = format!(
                "\"{}\"",
                digest[..12].iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            let matches = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
            if matches {
                return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
            }
            (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
                    (header::ETAG, etag),
                    (header::CACHE_CONTROL, "no-cache".to_string()),
                ],
                html,
            )
                .into_response()
        }
        Ok(Err(message)) => error(&message),
        Err(e) => error(&e),
    }
}

fn error(message: &str) -> Response {
    tracing::warn!("HTTP request failed: {message}");
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{message}\n")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_selector_reads_pairs_from_the_query() {
        let sel = status_selector(Some("selector=env%3Dprod,tier=web&x=1")).unwrap();
        assert_eq!(
            sel.0,
            [
                ("env".to_string(), "prod".to_string()),
                ("tier".to_string(), "web".to_string())
            ]
        );
        assert!(status_selector(None).unwrap().is_empty());
        assert!(status_selector(Some("selector=novalue")).is_err());
        assert!(status_selector(Some("selector=a%zz")).is_err());
    }
}
