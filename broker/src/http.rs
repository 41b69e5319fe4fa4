//! The HTTP endpoint: `GET /health` (200 once serving) and `GET /metrics` (Prometheus text format): the
//! broker's figures (`crate::metrics`) on a node with the broker role, the controller's on a node with the
//! controller role.
//!
//! Two fixed routes do not need an HTTP framework: this reads one request head (bounded), answers, and
//! closes the connection.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// The most bytes of a request head read before answering 400.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;

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
