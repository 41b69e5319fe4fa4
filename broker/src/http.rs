//! The HTTP endpoint: `GET /health` (200 once serving) and `GET /metrics` (Prometheus text format): the
//! broker's figures on a node with the broker role, the controller's on a node with the controller role.
//!
//! Two fixed routes do not need an HTTP framework: this reads one request head (bounded), answers, and
//! closes the connection.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::api::SUPPORTED;
use crate::broker::Broker;

/// The most bytes of a request head read before answering 400.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;

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

/// Serves `/health` and `/metrics` until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, render: Render, shutdown: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "HTTP endpoint ready (/health, /metrics)");
    }
    loop {
        let (mut stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => { debug!(error = %e, "HTTP accept failed"); continue; }
            },
            () = shutdown.cancelled() => return,
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_HEAD_BYTES_MAX {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&chunk[..n]),
                }
            }
            let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
            let (status, content_type, body) = match line {
                b"GET /health HTTP/1.1" | b"GET /health HTTP/1.0" => ("200 OK", "text/plain", "ok\n".to_owned()),
                b"GET /metrics HTTP/1.1" | b"GET /metrics HTTP/1.0" => {
                    ("200 OK", "text/plain; version=0.0.4", render())
                }
                _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
