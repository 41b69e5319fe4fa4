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
//!
//! What clients can hold is bounded, with Kafka's settings: `max.connections` connections are served at once
//! (more wait in the accept backlog), `max.connections.per.ip` from one address (more are closed at once),
//! and every request holds its size from `queued.max.request.bytes` from the moment its size is read until
//! it is answered, so the memory requests take is bounded however many connections send at once: a
//! connection whose request does not fit is not read until memory comes back (a request larger than the
//! whole pool waits for all of it). `connections.max.idle.ms` closes a connection that sends nothing, and
//! one whose request takes longer than that to arrive: half a frame does not hold memory forever.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use strata_protocol::frame::{self, SIZE_PREFIX_BYTES};
use strata_protocol::request::{self, RequestError};
use strata_protocol::response;
use strata_protocol::transport::{BoxIo, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::api;
use crate::broker::Broker;
use crate::metrics::{RemoteWait, RequestTimes};
use crate::settings::BrokerSettings;

/// How long a stop waits for connections to finish their in-flight request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The broker-wide bounds on what clients hold, shared by all its listeners: `max.connections`,
/// `max.connections.per.ip` and `queued.max.request.bytes`, as in Kafka.
pub struct Limits {
    connections: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
    memory: Arc<RequestMemory>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("connections_free", &self.connections.available_permits())
            .field("request_bytes_free", &self.memory.bytes.available_permits())
            .finish()
    }
}

impl Limits {
    /// Bytes of `queued.max.request.bytes` held by requests being read or handled.
    pub fn request_bytes_in_use(&self) -> u64 {
        u64::from(self.memory.bytes_max) - self.memory.bytes.available_permits() as u64
    }

    pub fn new(settings: &BrokerSettings) -> Arc<Self> {
        Arc::new(Self {
            connections: Arc::new(Semaphore::new(settings.max_connections)),
            per_ip: Arc::new(PerIp::new(settings.max_connections_per_ip)),
            memory: Arc::new(RequestMemory::new(settings.queued_max_request_bytes)),
        })
    }
}

/// Serves Kafka clients on `listener`, the one named `name`, within `limits` (shared with the broker's other
/// listeners), until `shutdown` is cancelled.
pub async fn run(
    mut listener: impl Listener,
    name: Arc<str>,
    limits: Arc<Limits>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    let (limit, per_ip, memory) = (&limits.connections, &limits.per_ip, &limits.memory);
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
        let Some(counted) = per_ip.open(peer.ip()) else {
            warn!(%peer, max = per_ip.max, "closing connection: max.connections.per.ip reached for its address");
            continue;
        };
        let connected = broker.metrics.connection_opened(&name);
        let (broker, shutdown, memory) = (broker.clone(), shutdown.clone(), memory.clone());
        let origin = api::Origin {
            peer,
            listener: name.clone(),
        };
        connections.spawn(async move {
            serve(stream, origin, &broker, &memory, &shutdown).await;
            drop(connected);
            drop(counted);
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

/// Open connections per client address, at most `max` each. An address has an entry only while it has a
/// connection open, so the map is bounded by `max.connections`.
struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its address; uncounted when dropped.
struct Counted {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn new(max: usize) -> Self {
        PerIp {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a new connection from `ip`, unless the address already has `max` open.
    fn open(self: &Arc<Self>, ip: IpAddr) -> Option<Counted> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        // `max` is at least 1, so a refused address already has an entry.
        let count = open.entry(ip).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Counted {
            per_ip: self.clone(),
            ip,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.per_ip.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// `queued.max.request.bytes` as a semaphore of bytes: a request holds its size from the moment its size
/// prefix is read until it is answered.
struct RequestMemory {
    bytes: Arc<Semaphore>,
    /// The whole pool; the most one request can hold (a larger one takes all of it).
    bytes_max: u32,
}

impl RequestMemory {
    fn new(bytes_max: usize) -> Self {
        let bytes_max = u32::try_from(bytes_max).unwrap_or(u32::MAX);
        RequestMemory {
            bytes: Arc::new(Semaphore::new(bytes_max as usize)),
            bytes_max,
        }
    }

    async fn take(&self, size: usize) -> OwnedSemaphorePermit {
        let wanted = u32::try_from(size).unwrap_or(u32::MAX).min(self.bytes_max);
        self.bytes
            .clone()
            .acquire_many_owned(wanted)
            .await
            .expect("the semaphore is never closed")
    }
}

/// Why a connection stops being read.
enum Closed {
    /// The client closed it, or went away.
    Gone,
    /// Shutdown.
    Stopping,
    /// Something to log: the client misbehaved.
    Refused(String),
}

/// The bytes read from a connection and not yet handed out as frames. One buffer per connection, reused for
/// every frame as Framed's is: a fresh allocation per request costs page faults and unmapping on every
/// request (a quarter of the throughput of acks=all produces, measured), so the buffer is kept, unless one
/// large request left it larger than [`READ_BUFFER_KEPT_BYTES_MAX`].
struct ReadBuffer {
    bytes: BytesMut,
}

/// The most a connection's read buffer keeps between requests.
const READ_BUFFER_KEPT_BYTES_MAX: usize = 4 * 1024 * 1024;
const READ_BUFFER_INITIAL_BYTES: usize = 8 * 1024;

impl ReadBuffer {
    fn new() -> Self {
        ReadBuffer {
            bytes: BytesMut::with_capacity(READ_BUFFER_INITIAL_BYTES),
        }
    }

    /// Reads until at least `len` bytes are buffered, within `deadline`; `Ok(false)` when the connection
    /// ends first with nothing buffered.
    async fn fill(
        &mut self,
        stream: &mut BoxIo,
        len: usize,
        deadline: tokio::time::Instant,
        shutdown: &CancellationToken,
        what: &str,
    ) -> Result<bool, Closed> {
        while self.bytes.len() < len {
            if self.bytes.capacity() - self.bytes.len() < READ_BUFFER_INITIAL_BYTES.min(len - self.bytes.len()) {
                self.bytes.reserve(READ_BUFFER_INITIAL_BYTES);
            }
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, stream.read_buf(&mut self.bytes)) => read,
                () = shutdown.cancelled() => return Err(Closed::Stopping),
            };
            match read {
                Ok(Ok(0)) if self.bytes.is_empty() => return Ok(false),
                Ok(Ok(0)) => return Err(Closed::Gone),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    debug!(error = %e, "connection lost");
                    return Err(Closed::Gone);
                }
                Err(_) => {
                    return Err(Closed::Refused(format!(
                        "{what} did not arrive within connections.max.idle.ms"
                    )));
                }
            }
        }
        Ok(true)
    }
}

/// Reads the next request frame, holding its size in `memory`: `Closed` when there is none.
async fn read_frame(
    stream: &mut BoxIo,
    buffer: &mut ReadBuffer,
    settings: &BrokerSettings,
    memory: &RequestMemory,
    shutdown: &CancellationToken,
) -> Result<(Bytes, OwnedSemaphorePermit), Closed> {
    let idle = Duration::from_millis(settings.connections_max_idle_ms);
    if buffer.bytes.is_empty() && buffer.bytes.capacity() > READ_BUFFER_KEPT_BYTES_MAX {
        *buffer = ReadBuffer::new();
    }
    let deadline = tokio::time::Instant::now() + idle;
    if !buffer
        .fill(stream, SIZE_PREFIX_BYTES, deadline, shutdown, "a request")
        .await?
    {
        return Err(Closed::Gone);
    }
    let prefix = buffer.bytes[..SIZE_PREFIX_BYTES].try_into().expect("4 bytes");
    let size = frame::body_size(prefix, settings.socket_request_max_bytes)
        .map_err(|e| Closed::Refused(format!("bad frame: {e}")))?;
    // Memory first, then the room for the body: a connection whose request does not fit is not read.
    let permit = tokio::select! {
        permit = memory.take(size) => permit,
        () = shutdown.cancelled() => return Err(Closed::Stopping),
    };
    let whole = SIZE_PREFIX_BYTES + size;
    if buffer.bytes.len() < whole {
        buffer.bytes.reserve(whole - buffer.bytes.len());
    }
    // The whole request within connections.max.idle.ms of its size.
    let deadline = tokio::time::Instant::now() + idle;
    buffer.fill(stream, whole, deadline, shutdown, "the request").await?;
    buffer.bytes.advance(SIZE_PREFIX_BYTES);
    Ok((buffer.bytes.split_to(size).freeze(), permit))
}

/// Serves one connection until the client closes it, it sends something that closes it, or shutdown.
async fn serve(
    mut stream: BoxIo,
    origin: api::Origin,
    broker: &Broker,
    memory: &RequestMemory,
    shutdown: &CancellationToken,
) {
    let mut buffer = ReadBuffer::new();
    let peer = origin.peer;
    debug!(%peer, listener = %origin.listener, "connection opened");
    loop {
        let (frame, _memory) =
            match read_frame(&mut stream, &mut buffer, &broker.static_settings, memory, shutdown).await {
                Ok(read) => read,
                Err(Closed::Gone | Closed::Stopping) => break,
                Err(Closed::Refused(why)) => {
                    warn!(%peer, "closing connection: {why}");
                    break;
                }
            };
        let read = Instant::now();
        let remote = RemoteWait::default();
        let reply = match request::decode(frame, api::supported) {
            Ok(request) => {
                let (api_key, version, correlation_id) = (request.api_key, request.version(), request.correlation_id());
                let started = Instant::now();
                let body = api::handle(broker, request, &origin, &remote).await;
                Handled {
                    api_key,
                    version,
                    correlation_id,
                    started,
                    body,
                }
            }
            Err(RequestError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                version,
                correlation_id,
            }) => {
                debug!(%peer, version, "ApiVersions at an unsupported version; answering with v0");
                Handled {
                    api_key: ApiKey::ApiVersions,
                    version: 0,
                    correlation_id,
                    started: Instant::now(),
                    body: Some(ResponseKind::ApiVersions(api::unsupported_version_response())),
                }
            }
            Err(e) => {
                warn!(%peer, error = %e, "closing connection: request refused");
                break;
            }
        };
        let handled = Instant::now();
        let times = |written| RequestTimes {
            read,
            started: reply.started,
            handled,
            remote: remote.elapsed(),
            written,
        };
        let Some(body) = &reply.body else {
            broker.metrics.request_done(reply.api_key, times(handled), None);
            continue;
        };
        let bytes = match response::encode(reply.api_key, reply.version, reply.correlation_id, body) {
            Ok(bytes) => bytes,
            Err(e) => {
                error!(%peer, error = %e, "closing connection: response does not encode");
                break;
            }
        };
        if let Err(e) = write_frame(&mut stream, bytes).await {
            debug!(%peer, error = %e, "connection lost while answering");
            break;
        }
        broker
            .metrics
            .request_done(reply.api_key, times(Instant::now()), Some(body));
    }
    debug!(%peer, "connection closed");
}

/// A request handled, and its answer (`None`: none is sent).
struct Handled {
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    /// When its handler started.
    started: Instant,
    body: Option<ResponseKind>,
}

/// Writes one size-prefixed frame: the prefix and the body in one vectored write, without copying the body.
async fn write_frame(stream: &mut BoxIo, body: Bytes) -> std::io::Result<()> {
    let size = i32::try_from(body.len()).map_err(|_| std::io::Error::other("a response over 2 GiB"))?;
    let mut frame = Bytes::copy_from_slice(&size.to_be_bytes()).chain(body);
    stream.write_all_buf(&mut frame).await?;
    stream.flush().await
}

/// Binds the Kafka listener `name`, logging where.
pub async fn bind(name: &str, addr: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the Kafka listener {name} on {addr}: {e}"))?;
    info!(addr = %listener.local_addr()?, listener = name, "Kafka listener ready");
    Ok(listener)
}
