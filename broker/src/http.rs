//! The HTTP endpoint: `GET /health` (200 once serving) and `GET /metrics` (Prometheus text format): the
//! broker's figures on a node with the broker role, the controller's on a node with the controller role.
//!
//! Served by axum over hyper's HTTP/1.1 (keep-alive, bounded bodies); the console's pages are in
//! `crate::console`, which this module only mounts.

use std::fmt::Write as _;
use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use kafka_protocol::messages::ApiKey;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::api::SUPPORTED;
use crate::broker::Broker;
use openraft::async_runtime::WatchReceiver;
use strata_controller::types::Raft;

/// Counters exported on `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    requests: Vec<(ApiKey, AtomicU64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: SUPPORTED.iter().map(|(key, _, _)| (*key, AtomicU64::new(0))).collect(),
        }
    }
}

impl Metrics {
    pub fn request(&self, api_key: ApiKey) {
        if let Some((_, count)) = self.requests.iter().find(|(key, _)| *key == api_key) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn render(&self, broker: &Broker) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP strata_requests_total Kafka requests handled, by API.\n# TYPE strata_requests_total counter\n",
        );
        for (key, count) in &self.requests {
            let _ = writeln!(
                out,
                "strata_requests_total{{api=\"{key:?}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP strata_request_bytes_in_use Bytes of queued.max.request.bytes held by requests being read or handled.\n# TYPE strata_request_bytes_in_use gauge\nstrata_request_bytes_in_use {}",
            broker.limits.request_bytes_in_use()
        );
        let logs = broker.replicas.log_manager().logs();
        let bytes: u64 = logs
            .iter()
            .map(|(_, log)| log.lock().map_or(0, |l| l.size_bytes()))
            .sum();
        let _ = writeln!(
            out,
            "# HELP strata_partitions Partitions hosted.\n# TYPE strata_partitions gauge\nstrata_partitions {}",
            logs.len()
        );
        let _ = writeln!(
            out,
            "# HELP strata_topics Topics.\n# TYPE strata_topics gauge\nstrata_topics {}",
            broker.metadata.image().topics().len()
        );
        let _ = writeln!(
            out,
            "# HELP strata_log_bytes Bytes in partition logs.\n# TYPE strata_log_bytes gauge\nstrata_log_bytes {bytes}"
        );
        let (mut leading, mut under_replicated) = (0, 0);
        for partition in broker.replicas.all() {
            let state = partition.state();
            if state.role == crate::replica::Role::Leader {
                leading += 1;
                under_replicated += usize::from(state.isr.len() < state.replicas.len());
            }
        }
        let _ = writeln!(
            out,
            "# HELP strata_leader_partitions Partitions this broker leads.\n# TYPE strata_leader_partitions gauge\nstrata_leader_partitions {leading}"
        );
        let _ = writeln!(
            out,
            "# HELP strata_under_replicated_partitions Led partitions whose ISR lacks some replica.\n# TYPE strata_under_replicated_partitions gauge\nstrata_under_replicated_partitions {under_replicated}"
        );
        let handles = broker.replicas.log_manager().handles();
        let _ = writeln!(
            out,
            "# HELP strata_open_log_handles Open segment files and index maps.\n# TYPE strata_open_log_handles gauge\nstrata_open_log_handles {}",
            handles.open_count()
        );
        out
    }
}

/// What `/metrics` shows, rendered at each request.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The controller's figures: whether it is the active controller, its Raft term, and the metadata log
/// index it has applied.
pub fn controller_metrics(raft: &Raft, id: u64) -> String {
    let metrics = raft.metrics().borrow_watched().clone();
    let active = metrics.current_leader == Some(id);
    let applied = metrics.last_applied.map_or(0, |id| id.index);
    format!(
        "# HELP strata_controller_active 1 on the active controller (the Raft leader).\n# TYPE strata_controller_active gauge\nstrata_controller_active {}\n\
         # HELP strata_controller_term The Raft term.\n# TYPE strata_controller_term gauge\nstrata_controller_term {}\n\
         # HELP strata_metadata_applied_index The metadata log index applied.\n# TYPE strata_metadata_applied_index gauge\nstrata_metadata_applied_index {applied}\n",
        u8::from(active),
        metrics.current_term,
    )
}

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
