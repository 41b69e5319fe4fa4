//! The client side of the controllers' Raft RPCs: openraft's network over gRPC (tonic).
//!
//! [`Network`] is openraft's [`RaftNetworkFactory`]: for each peer it makes a [`PeerClient`] holding a lazily
//! connected tonic channel to the peer's [`ControllerNode::addr`]. Nothing connects until the first RPC, and a
//! lost connection is re-established by the channel on the next one. Every RPC is bounded by openraft's
//! time-to-live for it ([`RPCOption::hard_ttl`]), and connecting by [`CONNECT_TIMEOUT`].
//!
//! A connection that goes silent (the peer's host vanished, a partition dropped its packets) is noticed by
//! HTTP/2 keep-alive pings ([`KEEPALIVE_INTERVAL`], [`KEEPALIVE_TIMEOUT`]), and the channel reconnects. Without
//! them nothing would notice: RPCs on it only time out, the channel keeps it, and the kernel gives up on it
//! only after its retransmissions do (about 15 minutes on Linux); openraft keeps one client per peer for a
//! whole term, so its replication to that peer would stall that long.
//!
//! How a channel reaches the peer is a [`Connect`]: by default the OS's TCP ([`Endpoint::connect_lazy`]);
//! [`Network::with_connect`] substitutes another transport, such as the simulated network of
//! the fault suite's `tests/tests/controller_quorum.rs`, without changing anything else (address, timeouts, message limits, errors).
//!
//! Errors map onto openraft's: a peer that cannot be reached (connection refused, reset, or the peer shutting
//! down: gRPC `UNAVAILABLE`) is [`Unreachable`], so openraft backs off before retrying; a timeout is
//! [`Timeout`]; anything else (an error answered by the peer, an answer that does not decode) is a
//! [`NetworkError`], retried at once.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory, RaftNetworkV2};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

use crate::codec;
use crate::proto::raft::ControllerNode;
use crate::proto::raft::raft_service_client::RaftServiceClient;
use crate::types::{
    AppendEntriesRequest, AppendEntriesResponse, NodeId, Snapshot, SnapshotResponse, TypeConfig, Vote, VoteRequest,
    VoteResponse,
};

/// How long connecting to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a connection to a peer may go without receiving anything before the client pings the peer. A
/// leader's connections carry heartbeats far more often, so only idle or dead connections are pinged.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// How long the answer to a keep-alive ping may take before the connection counts as dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// The largest gRPC message a controller sends or accepts: bounds an AppendEntries batch and a whole snapshot
/// (a snapshot of 100,000 partitions is about 4 MB).
pub const RPC_MESSAGE_BYTES_MAX: usize = 256 << 20;

/// Makes the channel to a peer from its [`Endpoint`], which already carries the peer's URI
/// (`http://<addr>`) and the connection settings of this module.
///
/// The channel must connect lazily (on its first RPC, and again after losing its connection): it is made
/// when openraft first needs the peer, which may well be down then.
pub type Connect = Arc<dyn Fn(&Endpoint) -> Channel + Send + Sync>;

/// A connection accepted by any transport, with what tonic's server asks of one (its connect info, of which
/// nothing is used). [`crate::start_on`] serves connections of this shape from a simulated network as well
/// as from the OS's.
#[derive(Debug)]
pub struct Accepted<T>(pub T);

impl<T> Connected for Accepted<T> {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}

impl<T: AsyncRead + Unpin> AsyncRead for Accepted<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Accepted<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// openraft's network factory for node `id`: makes a [`PeerClient`] per peer.
#[derive(Clone)]
pub struct Network {
    id: NodeId,
    connect: Connect,
}

impl Network {
    /// The network of the controller whose node id is `id` (named in errors), over the OS's TCP.
    pub fn new(id: NodeId) -> Self {
        Self::with_connect(id, Endpoint::connect_lazy)
    }

    /// The network of controller `id` whose channels `connect` makes, e.g. with
    /// [`Endpoint::connect_with_connector_lazy`] over another transport.
    pub fn with_connect(id: NodeId, connect: impl Fn(&Endpoint) -> Channel + Send + Sync + 'static) -> Self {
        Self {
            id,
            connect: Arc::new(connect),
        }
    }
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network").field("id", &self.id).finish_non_exhaustive()
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &ControllerNode) -> PeerClient {
        PeerClient::new(self.id, target, node, &self.connect)
    }
}

/// The endpoint of the peer at `addr` (`HOST:PORT`), with this module's connection settings.
fn peer_endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        // Also between RPCs: an RPC that timed out leaves no stream open, and the next may come too late.
        .keep_alive_while_idle(true))
}

/// The RPCs from one controller to one peer.
#[derive(Debug)]
pub struct PeerClient {
    id: NodeId,
    target: NodeId,
    /// An error when the peer's address is not a valid URI: every RPC then fails as unreachable.
    client: Result<RaftServiceClient<Channel>, String>,
}

impl PeerClient {
    fn new(id: NodeId, target: NodeId, node: &ControllerNode, connect: &Connect) -> Self {
        let client = peer_endpoint(&node.addr)
            .map(|endpoint| {
                RaftServiceClient::new(connect(&endpoint))
                    .max_decoding_message_size(RPC_MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(RPC_MESSAGE_BYTES_MAX)
            })
            .map_err(|e| format!("invalid address {:?} of controller {target}: {e}", node.addr));
        Self { id, target, client }
    }

    /// Runs one RPC within `ttl`, mapping failures to openraft's errors.
    async fn call<T, F>(
        &mut self,
        action: RPCTypes,
        ttl: Duration,
        rpc: impl FnOnce(RaftServiceClient<Channel>) -> F,
    ) -> Result<T, RpcFailure>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(e) => return Err(RpcFailure::Unreachable(Unreachable::new(&io_error(e.clone())))),
        };
        match tokio::time::timeout(ttl, rpc(client)).await {
            Err(_elapsed) => Err(RpcFailure::Timeout(Timeout {
                action,
                id: self.id,
                target: self.target,
                timeout: ttl,
            })),
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(match status.code() {
                tonic::Code::Unavailable => RpcFailure::Unreachable(Unreachable::new(&status)),
                tonic::Code::DeadlineExceeded => RpcFailure::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout: ttl,
                }),
                _ => RpcFailure::Network(NetworkError::new(&status)),
            }),
        }
    }

    /// A Vote, or with `pre` a PreVote (openraft names both `Vote` in errors).
    async fn vote_rpc(
        &mut self,
        pre: bool,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RPCError<TypeConfig>> {
        let request = codec::vote_request_to_pb(&rpc);
        let response = self
            .call(RPCTypes::Vote, option.hard_ttl(), |mut client| async move {
                if pre {
                    client.pre_vote(request).await
                } else {
                    client.vote(request).await
                }
            })
            .await
            .map_err(RpcFailure::into_rpc_error)?;
        codec::vote_response_from_pb(&response).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RPCError<TypeConfig>> {
        let request = codec::append_request_to_pb(&rpc);
        let response = self
            .call(RPCTypes::AppendEntries, option.hard_ttl(), |mut client| async move {
                client.append_entries(request).await
            })
            .await
            .map_err(RpcFailure::into_rpc_error)?;
        codec::append_response_from_pb(response).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    async fn vote(&mut self, rpc: VoteRequest, option: RPCOption) -> Result<VoteResponse, RPCError<TypeConfig>> {
        self.vote_rpc(false, rpc, option).await
    }

    async fn pre_vote(&mut self, rpc: VoteRequest, option: RPCOption) -> Result<VoteResponse, RPCError<TypeConfig>> {
        self.vote_rpc(true, rpc, option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError<TypeConfig>> {
        let request = codec::snapshot_request_to_pb(&vote, snapshot);
        let send = self.call(RPCTypes::InstallSnapshot, option.hard_ttl(), |mut client| async move {
            client.install_snapshot(request).await
        });
        let response = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            response = send => response.map_err(RpcFailure::into_streaming_error)?,
        };
        let vote = response
            .vote
            .as_ref()
            .ok_or_else(|| StreamingError::Network(NetworkError::new(&io_error("SnapshotResponse.vote is missing"))))?;
        Ok(SnapshotResponse::new(codec::vote_from_pb(vote)))
    }
}

/// A failed RPC, before it becomes the error type of the openraft method that sent it.
enum RpcFailure {
    Unreachable(Unreachable<TypeConfig>),
    Timeout(Timeout<TypeConfig>),
    Network(NetworkError<TypeConfig>),
}

impl RpcFailure {
    fn into_rpc_error(self) -> RPCError<TypeConfig> {
        match self {
            Self::Unreachable(e) => RPCError::Unreachable(e),
            Self::Timeout(e) => RPCError::Timeout(e),
            Self::Network(e) => RPCError::Network(e),
        }
    }

    fn into_streaming_error(self) -> StreamingError<TypeConfig> {
        match self {
            Self::Unreachable(e) => StreamingError::Unreachable(e),
            Self::Timeout(e) => StreamingError::Timeout(e),
            Self::Network(e) => StreamingError::Network(e),
        }
    }
}

fn io_error(message: impl Into<String>) -> std::io::Error {
    std::io::Error::other(message.into())
}
