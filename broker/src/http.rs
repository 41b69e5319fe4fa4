//! The HTTP endpoint: `GET /health` (200 once serving) and `GET /metrics` (Prometheus text format): the
//! broker's figures on a node with the broker role, the controller's on a node with the controller role.
//!
//! Served by axum over hyper's HTTP/1.1 (keep-alive, bounded bodies); the console's pages are in
//! `crate::console`, which this module only mounts.

use std::future::IntoFuture;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// What `/metrics` shows, rendered at each request.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `/health`, `/metrics` and, on a node with the broker role, the web console (`console`) until
/// `shutdown` is cancelled. Connections are HTTP/1.1 with keep-alive; open ones are dropped at shutdown.
pub async fn run(
    listener: TcpListener,
    render: Render,
    console: Option<Arc<crate::console::Console>>,
    shutdown: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        let routes = if console.is_some() {
            "/health, /metrics, / (console)"
        } else {
            "/health, /metrics"
        };
        info!(%addr, routes, "HTTP endpoint ready");
    }
    let app = router(render, console);
    let stopped = shutdown.clone();
    let serving = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopped.cancelled().await })
        .into_future();
    // At shutdown, requests being answered get a moment to finish; a client that keeps a connection busy
    // (a request head trickling in) must not hold the node's stop.
    let drained = async {
        shutdown.cancelled().await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        served = serving => if let Err(e) = served {
            debug!(error = %e, "HTTP server stopped");
        },
        () = drained => debug!("HTTP connections still open at shutdown were dropped"),
    }
}

/// How long requests in progress at shutdown may take to finish.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The routes: `/health` and `/metrics` open to anyone (Prometheus scrapes them), the console behind its
/// own authentication (`console::auth`).
pub fn router(render: Render, console: Option<Arc<crate::console::Console>>) -> Router {
    let metrics = Router::new()
        .route("/health", get(|| async { ([(CONTENT_TYPE, "text/plain")], "ok\n") }))
        .route(
            "/metrics",
            get(move || {
                let render = render.clone();
                async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], render()) }
            }),
        );
    let app = match console {
        Some(console) => metrics.merge(crate::console::routes(console)),
        None => metrics.fallback(|| async { (StatusCode::NOT_FOUND, [(CONTENT_TYPE, "text/plain")], "not found\n") }),
    };
    // A request head larger than this is refused by hyper before any handler runs.
    app.layer(axum::extract::DefaultBodyLimit::max(crate::console::FORM_BYTES_MAX))
}
