//! The Kafka listener: accepts connections, frames and decodes requests, hands them to the API dispatch,
//! and writes responses in request order.
//!
//! [`run`] takes its listener and a cancellation token, so tests hand in a listener on port 0 and stop it
//! at will. On cancellation it stops accepting, lets every connection finish the request it is handling
//! (a waiting fetch answers at once), and returns when all connections are closed.
//!
//! Bad input affects only its own connection: an oversized or malformed frame, an unknown API or an
//! unsupported version (other than ApiVersions, which is answered as Kafka does) is logged with the reason
//! and that connection is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use strata_protocol::frame::{FrameCodec, FrameError};
use strata_protocol::request::{self, RequestError};
use strata_protocol::response;
use strata_protocol::transport::{BoxIo, Listener};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::api;
use crate::broker::Broker;

/// The most client connections served at once; further ones wait in the accept backlog.
const CONNECTIONS_MAX: usize = 10_000;
/// How long a stop waits for connections to finish their in-flight request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves Kafka clients on `listener` until `shutdown` is cancelled.
pub async fn run(mut listener: impl Listener, broker: Arc<Broker>, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: log, and keep serving the connections we have.
                    error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            serve(stream, peer, &broker, &shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait()).await.is_err() {
        warn!(
            open = connections.len(),
            "connections still open after the drain timeout"
        );
    }
}

/// Serves one connection until the client closes it, it sends something that closes it, or shutdown.
async fn serve(stream: BoxIo, peer: SocketAddr, broker: &Broker, shutdown: &CancellationToken) {
    let mut framed = Framed::new(stream, FrameCodec::new(broker.settings.socket_request_max_bytes));
    debug!(%peer, "connection opened");
    loop {
        let frame = tokio::select! {
            frame = framed.next() => frame,
            () = shutdown.cancelled() => break,
        };
        let frame = match frame {
            None => break,
            Some(Ok(frame)) => frame.freeze(),
            // A client going away mid-read is not bad input.
            Some(Err(FrameError::Io(e))) => {
                debug!(%peer, error = %e, "connection lost");
                break;
            }
            Some(Err(e)) => {
                warn!(%peer, error = %e, "closing connection: bad frame");
                break;
            }
        };
        let reply = match request::decode(frame, api::supported) {
            Ok(request) => {
                let (api_key, version, correlation_id) = (request.api_key, request.version(), request.correlation_id());
                broker.metrics.request(api_key);
                api::handle(broker, request, peer)
                    .await
                    .map(|body| (api_key, version, correlation_id, body))
            }
            Err(RequestError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                version,
                correlation_id,
            }) => {
                debug!(%peer, version, "ApiVersions at an unsupported version; answering with v0");
                let body = ResponseKind::ApiVersions(api::unsupported_version_response());
                Some((ApiKey::ApiVersions, 0, correlation_id, body))
            }
            Err(e) => {
                warn!(%peer, error = %e, "closing connection: request refused");
                break;
            }
        };
        let Some((api_key, version, correlation_id, body)) = reply else {
            continue;
        };
        let bytes = match response::encode(api_key, version, correlation_id, &body) {
            Ok(bytes) => bytes,
            Err(e) => {
                error!(%peer, error = %e, "closing connection: response does not encode");
                break;
            }
        };
        if let Err(e) = framed.send(bytes).await {
            debug!(%peer, error = %e, "connection lost while answering");
            break;
        }
    }
    debug!(%peer, "connection closed");
}

/// Binds the Kafka listener, logging where.
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the Kafka listener on {addr}: {e}"))?;
    info!(addr = %listener.local_addr()?, "Kafka listener ready");
    Ok(listener)
}
