//! A small async Kafka client: one TCP connection to one broker.
//!
//! [`Client::connect`] opens the connection and negotiates versions with ApiVersions: for each API the client
//! uses the highest version that both the broker and this client support (see [`Client::version`]).
//! [`Client::send`] sends any `kafka-protocol` request and returns its typed response, with the request and
//! response header versions the API key's rules give and the correlation id checked.
//!
//! Requests can also be pipelined: [`Client::submit`] writes a request without waiting, [`Client::receive`]
//! reads the oldest outstanding response. A broker answers each connection's requests in order, so the
//! queue of outstanding requests is all the bookkeeping needed. [`ProducePipeline`] builds on that to keep
//! several Produce requests in flight, which is what makes a single connection fast.
//!
//! A [`Client`] does not find partition leaders on other brokers, retry, or reconnect. After an error other
//! than a Kafka error code ([`ClientError::Kafka`]) the connection is in an unknown state and every further
//! call fails with [`ClientError::Broken`]; connect again. [`Router`] does the rest for a cluster: one
//! client per broker, leaders and group coordinators looked up, and retries when they move.
//!
//! # Layout
//!
//! - this file: the connection, version negotiation, sending and receiving, [`ClientError`].
//! - [`admin`]: typed helpers for topics, partitions, configs, offsets and the cluster.
//! - [`records`]: records to v2 record batches ([`BatchBuilder`]) and fetched bytes back to records.
//! - [`produce`]: one-shot produce, the pipelined [`ProducePipeline`] and its connection-less
//!   [`ProduceQueue`].
//! - [`fetch`]: fetch and decode records.
//! - [`partitioner`]: Kafka's murmur2 key partitioner, so keys land where Java clients put them.
//! - [`share`]: typed helpers for share groups (KIP-932): describe one, read, set and delete its start
//!   offsets.
//! - [`router`]: a cluster through its bootstrap broker: a connection per broker, partition leaders, group
//!   coordinators, and retries when they move.

pub mod admin;
pub mod fetch;
pub mod partitioner;
pub mod produce;
pub mod records;
pub mod router;
pub mod share;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes, VersionRange};
use thiserror::Error;
use tokio_util::codec::Framed;

use crate::frame::{FrameCodec, FrameError};
use crate::transport::{BoxIo, Connector};

pub use fetch::{FetchOptions, FetchedPartition};
pub use produce::{Acked, Acks, Answered, ProducePipeline, ProduceQueue};
pub use records::{BatchBuilder, Compression, Headers, Record};
pub use router::Router;

/// How long connecting may take, by default.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// How long a response may take, by default. Fetches ask the broker to wait far less than this.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// The most requests written and not yet answered on one connection.
pub const IN_FLIGHT_MAX: usize = 64;
/// The ApiVersions version sent first. A broker that does not know it answers with a v0 body listing what
/// it supports, and the client asks again at the highest version the broker has.
const API_VERSIONS_VERSION: i16 = 4;

/// Newest versions whose semantics this client implements, where they are older than what `kafka-protocol`
/// can encode: Produce and Fetch v13 name topics by id only, and the helpers here name them.
const VERSION_CAPS: &[(ApiKey, i16)] = &[(ApiKey::Produce, 12), (ApiKey::Fetch, 12)];

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Why a client call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connection to {addr} failed: {source}")]
    Io {
        addr: String,
        #[source]
        source: FrameError,
    },
    #[error("{addr} closed the connection")]
    Closed { addr: String },
    #[error("no response from {addr} to {api_key:?} within {timeout:?}")]
    Timeout {
        addr: String,
        api_key: ApiKey,
        timeout: Duration,
    },
    #[error("the connection to {addr} is unusable after an earlier error; connect again")]
    Broken { addr: String },
    #[error("the broker does not support {0:?}")]
    UnsupportedApi(ApiKey),
    #[error("{api_key:?}: the broker supports versions {broker:?}, this client {client:?}")]
    UnsupportedVersion {
        api_key: ApiKey,
        broker: (i16, i16),
        client: (i16, i16),
    },
    #[error("{api_key:?} v{version}: {reason}")]
    Protocol {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {error}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kafka {
        context: String,
        error: ResponseError,
        message: Option<String>,
    },
    #[error("record batch: {0}")]
    Records(String),
    #[error("{0}")]
    Usage(String),
}

impl ClientError {
    /// The Kafka error code, when the broker answered with one.
    pub fn kafka_error(&self) -> Option<ResponseError> {
        match self {
            ClientError::Kafka { error, .. } => Some(*error),
            _ => None,
        }
    }
}

/// `Ok` for error code 0, otherwise [`ClientError::Kafka`] with `context` (what was being done to what).
pub(crate) fn check(code: i16, message: Option<&StrBytes>, context: impl FnOnce() -> String) -> Result<()> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => Err(ClientError::Kafka {
            context: context(),
            error,
            message: message.map(|m| m.to_string()).filter(|m| !m.is_empty()),
        }),
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Sent in every request header; brokers log it.
    pub client_id: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// How connections are opened: the OS's TCP unless a simulation gives its own.
    pub connector: Connector,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            client_id: "strata-client".into(),
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            connector: Connector::tcp(),
        }
    }
}

/// A request written and not yet answered.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
}

/// A connection to one broker. See the module documentation.
#[derive(Debug)]
pub struct Client {
    framed: Framed<BoxIo, FrameCodec>,
    addr: String,
    peer: SocketAddr,
    options: ClientOptions,
    client_id: StrBytes,
    /// The broker's version range per API key, from ApiVersions.
    broker_versions: HashMap<i16, (i16, i16)>,
    next_correlation_id: i32,
    outstanding: VecDeque<Outstanding>,
    broken: bool,
}

impl Client {
    /// Connects to `addr` (`host:port`) with default options and negotiates versions.
    pub async fn connect(addr: &str) -> Result<Client> {
        Self::connect_with(addr, ClientOptions::default()).await
    }

    /// Connects to `addr`, trying each address the name resolves to, and negotiates versions.
    pub async fn connect_with(addr: &str, options: ClientOptions) -> Result<Client> {
        let (stream, peer) = tokio::time::timeout(options.connect_timeout, options.connector.connect(addr))
            .await
            .map_err(|_| ClientError::Connect {
                addr: addr.into(),
                reason: format!("timed out after {:?}", options.connect_timeout),
            })?
            .map_err(|e| ClientError::Connect {
                addr: addr.into(),
                reason: e.to_string(),
            })?;
        let mut client = Client {
            framed: Framed::new(stream, FrameCodec::default()),
            addr: addr.into(),
            peer,
            client_id: StrBytes::from_string(options.client_id.clone()),
            options,
            broker_versions: HashMap::new(),
            next_correlation_id: 0,
            outstanding: VecDeque::new(),
            broken: false,
        };
        client.negotiate().await?;
        Ok(client)
    }

    /// The address this client was given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The address the connection reached.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        Some(self.peer)
    }

    /// Whether requests can still be sent: false after an error that left the connection in an unknown
    /// state (see the module documentation).
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// The broker's supported version range for `api_key`, if it supports the API at all.
    pub fn broker_versions(&self, api_key: ApiKey) -> Option<(i16, i16)> {
        self.broker_versions.get(&(api_key as i16)).copied()
    }

    /// The version this client uses for `R`: the highest that the broker and the client both support.
    pub fn version<R: Request>(&self) -> Result<i16> {
        let api_key = api_key_of::<R>();
        let (broker_min, broker_max) = self
            .broker_versions(api_key)
            .ok_or(ClientError::UnsupportedApi(api_key))?;
        let cap = VERSION_CAPS
            .iter()
            .find(|(key, _)| *key == api_key)
            .map_or(i16::MAX, |(_, cap)| *cap);
        let VersionRange { min, max } = R::VERSIONS;
        let client = (min, max.min(cap));
        let version = broker_max.min(client.1);
        if version < broker_min.max(client.0) {
            return Err(ClientError::UnsupportedVersion {
                api_key,
                broker: (broker_min, broker_max),
                client,
            });
        }
        Ok(version)
    }

    /// Sends `request` at the negotiated version and waits for its response.
    pub async fn send<R: Request>(&mut self, request: R) -> Result<R::Response> {
        let version = self.version::<R>()?;
        self.send_at(request, version).await
    }

    /// Sends `request` at `version` and waits for its response. Nothing else may be in flight.
    pub async fn send_at<R: Request>(&mut self, request: R, version: i16) -> Result<R::Response> {
        if !self.outstanding.is_empty() {
            return Err(ClientError::Usage(format!(
                "{} pipelined requests are still unanswered; receive them before sending",
                self.outstanding.len()
            )));
        }
        self.submit_at(&request, version).await?;
        self.receive::<R>().await
    }

    /// Writes `request` at the negotiated version without waiting for the response, which
    /// [`receive`](Self::receive) returns later, in submission order.
    ///
    /// Keep the responses of everything in flight smaller than the socket's receive buffer: the broker
    /// stops reading requests while its responses cannot be written.
    pub async fn submit<R: Request>(&mut self, request: &R) -> Result<()> {
        let version = self.version::<R>()?;
        self.submit_at(request, version).await
    }

    /// [`submit`](Self::submit) at `version`.
    pub async fn submit_at<R: Request>(&mut self, request: &R, version: i16) -> Result<()> {
        self.write(request, version, true).await
    }

    /// Number of requests written and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.outstanding.len()
    }

    /// Reads the response to the oldest request in flight, which must be an `R`.
    pub async fn receive<R: Request>(&mut self) -> Result<R::Response> {
        let expected = *self
            .outstanding
            .front()
            .ok_or_else(|| ClientError::Usage("receive with no request in flight".into()))?;
        if expected.api_key != api_key_of::<R>() {
            return Err(ClientError::Usage(format!(
                "the oldest request in flight is {:?}, not {:?}",
                expected.api_key,
                api_key_of::<R>()
            )));
        }
        let mut body = self.read_response().await?;
        let decoded = R::Response::decode(&mut body, expected.version)
            .map_err(|e| self.protocol_error(expected, format!("malformed response: {e}")))?;
        if !body.is_empty() {
            return Err(self.protocol_error(expected, format!("{} bytes after the response", body.len())));
        }
        Ok(decoded)
    }

    /// Encodes and writes one request. `answered` is false for requests the broker does not answer
    /// (Produce with acks=0), which therefore take no place in the queue of outstanding requests.
    pub(crate) async fn write<R: Request>(&mut self, request: &R, version: i16, answered: bool) -> Result<()> {
        self.usable()?;
        if answered && self.outstanding.len() >= IN_FLIGHT_MAX {
            return Err(ClientError::Usage(format!(
                "{IN_FLIGHT_MAX} requests are already in flight"
            )));
        }
        let api_key = api_key_of::<R>();
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let outstanding = Outstanding {
            correlation_id,
            api_key,
            version,
        };
        let mut buf = BytesMut::new();
        let encoded = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()))
            .encode(&mut buf, api_key.request_header_version(version))
            .and_then(|()| request.encode(&mut buf, version));
        // A request that does not encode is the caller's mistake (a field its version lacks); the
        // connection is untouched.
        encoded.map_err(|e| ClientError::Protocol {
            api_key,
            version,
            reason: format!("request does not encode: {e}"),
        })?;
        let sent = tokio::time::timeout(self.options.request_timeout, self.framed.send(buf.freeze())).await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(source)) => return Err(self.fail_io(source)),
            Err(_) => {
                self.broken = true;
                return Err(ClientError::Timeout {
                    addr: self.addr.clone(),
                    api_key,
                    timeout: self.options.request_timeout,
                });
            }
        }
        if answered {
            self.outstanding.push_back(outstanding);
        }
        Ok(())
    }

    /// Reads the next frame, checks it answers the oldest request, and returns the body after the header.
    async fn read_response(&mut self) -> Result<Bytes> {
        self.usable()?;
        // Popped only once a frame is in: up to then this future can be dropped (a `select!` that woke for
        // something else) without losing track of the request. The framed reader buffers partial frames.
        let expected = *self.outstanding.front().expect("checked by the caller");
        let frame = match tokio::time::timeout(self.options.request_timeout, self.framed.next()).await {
            Ok(Some(Ok(frame))) => frame.freeze(),
            Ok(Some(Err(source))) => return Err(self.fail_io(source)),
            Ok(None) => {
                self.broken = true;
                return Err(ClientError::Closed {
                    addr: self.addr.clone(),
                });
            }
            Err(_) => {
                self.broken = true;
                return Err(ClientError::Timeout {
                    addr: self.addr.clone(),
                    api_key: expected.api_key,
                    timeout: self.options.request_timeout,
                });
            }
        };
        self.outstanding.pop_front();
        let mut body = frame;
        let header = ResponseHeader::decode(&mut body, expected.api_key.response_header_version(expected.version))
            .map_err(|e| self.protocol_error(expected, format!("malformed response header: {e}")))?;
        if header.correlation_id != expected.correlation_id {
            return Err(self.protocol_error(
                expected,
                format!(
                    "response has correlation id {}, expected {}",
                    header.correlation_id, expected.correlation_id
                ),
            ));
        }
        Ok(body)
    }

    /// Asks for the broker's versions. Its answer to a version it does not know has a v0 body whatever
    /// version was asked, so the error code (the first field in every version) is read before the rest.
    async fn negotiate(&mut self) -> Result<()> {
        let mut version = API_VERSIONS_VERSION;
        for _ in 0..2 {
            let mut request = ApiVersionsRequest::default();
            // The software name and version exist from v3; earlier versions have an empty body.
            if version >= 3 {
                request = request
                    .with_client_software_name(StrBytes::from_static_str("strata"))
                    .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
            }
            self.write(&request, version, true).await?;
            let expected = *self.outstanding.front().expect("just written");
            let mut body = self.read_response().await?;
            let unsupported =
                body.len() >= 2 && i16::from_be_bytes([body[0], body[1]]) == ResponseError::UnsupportedVersion.code();
            let body_version = if unsupported { 0 } else { version };
            let response = ApiVersionsResponse::decode(&mut body, body_version)
                .map_err(|e| self.protocol_error(expected, format!("malformed ApiVersions response: {e}")))?;
            self.broker_versions = response
                .api_keys
                .iter()
                .map(|api| (api.api_key, (api.min_version, api.max_version)))
                .collect();
            if !unsupported {
                return check(response.error_code, None, || "ApiVersions".into());
            }
            // Ask again at the broker's newest ApiVersions version.
            version = self.version::<ApiVersionsRequest>()?;
        }
        Err(ClientError::Protocol {
            api_key: ApiKey::ApiVersions,
            version,
            reason: "the broker refused the version it advertised".into(),
        })
    }

    fn usable(&self) -> Result<()> {
        if self.broken {
            return Err(ClientError::Broken {
                addr: self.addr.clone(),
            });
        }
        Ok(())
    }

    fn fail_io(&mut self, source: FrameError) -> ClientError {
        self.broken = true;
        ClientError::Io {
            addr: self.addr.clone(),
            source,
        }
    }

    /// A response that does not match its request: the stream can no longer be trusted.
    fn protocol_error(&mut self, request: Outstanding, reason: String) -> ClientError {
        self.broken = true;
        ClientError::Protocol {
            api_key: request.api_key,
            version: request.version,
            reason,
        }
    }
}

impl Client {
    /// The entry for `group` among the groups a describe response of request `R` answers (`id` reads an
    /// entry's group id); a response without it is a protocol error.
    pub(crate) fn described<R: Request, T>(&self, groups: Vec<T>, id: impl Fn(&T) -> &str, group: &str) -> Result<T> {
        groups
            .into_iter()
            .find(|g| id(g) == group)
            .ok_or_else(|| ClientError::Protocol {
                api_key: api_key_of::<R>(),
                version: self.version::<R>().unwrap_or(-1),
                reason: format!("group {group} is not described in the response"),
            })
    }
}

fn api_key_of<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).expect("every kafka-protocol request has a known API key")
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{MetadataRequest, ProduceRequest, RequestKind, ResponseKind};
    use tokio::net::TcpListener;

    use super::*;
    use crate::request::{self, RequestError};
    use crate::response;

    /// A broker that knows ApiVersions up to v2 and Metadata up to v9, as an old Kafka would.
    async fn old_broker(listener: TcpListener) -> Vec<i16> {
        let supported = |key: ApiKey| match key {
            ApiKey::ApiVersions => Some(0..=2),
            ApiKey::Metadata => Some(0..=9),
            _ => None,
        };
        let versions = ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_max_version(2),
            ApiVersion::default()
                .with_api_key(ApiKey::Metadata as i16)
                .with_max_version(9),
        ]);
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(stream, FrameCodec::default());
        let mut asked = Vec::new();
        while let Some(frame) = framed.next().await {
            let frame = frame.unwrap().freeze();
            asked.push(i16::from_be_bytes([frame[2], frame[3]]));
            let (version, correlation_id, body) = match request::decode(frame, supported) {
                // Kafka answers a version it does not know with a v0 body and the error.
                Err(RequestError::UnsupportedVersion { correlation_id, .. }) => {
                    let refusal = versions
                        .clone()
                        .with_error_code(ResponseError::UnsupportedVersion.code());
                    (0, correlation_id, ResponseKind::ApiVersions(refusal))
                }
                Ok(request) => match request.body {
                    RequestKind::ApiVersions(_) => (
                        request.version(),
                        request.correlation_id(),
                        ResponseKind::ApiVersions(versions.clone()),
                    ),
                    other => panic!("unexpected {other:?}"),
                },
                Err(e) => panic!("{e}"),
            };
            let bytes = response::encode(ApiKey::ApiVersions, version, correlation_id, &body).unwrap();
            framed.send(bytes).await.unwrap();
        }
        asked
    }

    #[tokio::test]
    async fn an_old_broker_is_asked_again_at_the_version_it_knows() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let broker = tokio::spawn(old_broker(listener));
        let client = Client::connect(&addr).await.unwrap();
        assert_eq!(
            client.version::<MetadataRequest>().unwrap(),
            9,
            "the broker's newest, not the client's"
        );
        assert!(matches!(
            client.version::<ProduceRequest>(),
            Err(ClientError::UnsupportedApi(ApiKey::Produce))
        ));
        drop(client);
        assert_eq!(broker.await.unwrap(), [API_VERSIONS_VERSION, 2]);
    }
}
