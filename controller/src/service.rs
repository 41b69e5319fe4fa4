//! The server side of the controllers' Raft RPCs: a tonic `RaftService` that hands each request to the local
//! [`Raft`], and [`start`], which opens a controller's storage, builds its Raft and serves the RPCs.
//!
//! [`start`] serves on a TCP listener and reaches peers over TCP. [`start_on`] takes the accepted connections
//! and the [`Network`] instead, so that the same controller runs over another transport: the simulated
//! network of the fault suite's `tests/tests/controller_quorum.rs`.
//!
//! Whatever the transport, a controller runs openraft's pre-vote (unless the given config turns it off), so
//! that a controller that cannot win an election does not raise its term, and check-quorum
//! ([`crate::check_quorum`]), so that an active controller cut off from a majority steps down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::{Connected, TcpIncoming};
use tonic::{Request, Response, Status};

use crate::image::MetadataImage;
use crate::log_store::{LogStore, OpenError};
use crate::metrics::{ControllerFigures, ControllerMetrics};
use crate::network::{Network, RPC_MESSAGE_BYTES_MAX};
use crate::proto::raft as pb;
use crate::proto::raft::raft_service_server::{RaftService, RaftServiceServer};
use crate::quorum::{Quorum, QuorumGrpc, QuorumSettings};
use crate::state_machine::{SnapshotError, StateMachine};
use crate::types::{NodeId, Raft};
use crate::{DecodeError, METADATA_LOG_DIR, check_quorum, codec};

/// How long [`Controller::shutdown`] waits for open RPC connections to close before dropping them.
const SERVER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the active controller looks for brokers whose sessions ended: an eighth of the session
/// timeout, within these bounds, so that a broker is fenced at most an eighth after its session ends (a
/// short `broker.session.timeout.ms` is for failing over fast) and a long one is not checked needlessly.
const SESSION_CHECK_INTERVAL_MS_MIN: u64 = 50;
const SESSION_CHECK_INTERVAL_MS_MAX: u64 = 500;

fn session_check_interval(session_timeout_ms: u64) -> Duration {
    Duration::from_millis((session_timeout_ms / 8).clamp(SESSION_CHECK_INTERVAL_MS_MIN, SESSION_CHECK_INTERVAL_MS_MAX))
}

/// The gRPC face of one controller's [`Raft`].
#[derive(Debug, Clone)]
pub struct RaftGrpc {
    raft: Raft,
}

impl RaftGrpc {
    pub fn new(raft: Raft) -> Self {
        Self { raft }
    }

    /// The tonic service, with Strata's message size limit.
    pub fn into_service(self) -> RaftServiceServer<Self> {
        RaftServiceServer::new(self)
            .max_decoding_message_size(RPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RPC_MESSAGE_BYTES_MAX)
    }
}

fn bad_request(e: DecodeError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// The local Raft has stopped (shut down, or a fatal storage error): callers should back off.
fn stopped(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("controller Raft stopped: {e}"))
}

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let rpc = codec::append_request_from_pb(request.into_inner()).map_err(bad_request)?;
        let response = self.raft.append_entries(rpc).await.map_err(stopped)?;
        Ok(Response::new(codec::append_response_to_pb(&response)))
    }

    async fn vote(&self, request: Request<pb::VoteRequest>) -> Result<Response<pb::VoteResponse>, Status> {
        let rpc = codec::vote_request_from_pb(request.get_ref()).map_err(bad_request)?;
        let response = self.raft.vote(rpc).await.map_err(stopped)?;
        Ok(Response::new(codec::vote_response_to_pb(&response)))
    }

    async fn pre_vote(&self, request: Request<pb::VoteRequest>) -> Result<Response<pb::VoteResponse>, Status> {
        let rpc = codec::vote_request_from_pb(request.get_ref()).map_err(bad_request)?;
        let response = self.raft.pre_vote(rpc).await.map_err(stopped)?;
        Ok(Response::new(codec::vote_response_to_pb(&response)))
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let (vote, snapshot) = codec::snapshot_request_from_pb(request.into_inner()).map_err(bad_request)?;
        let response = self.raft.install_full_snapshot(vote, snapshot).await.map_err(stopped)?;
        Ok(Response::new(pb::SnapshotResponse {
            vote: Some(codec::vote_to_pb(&response.vote)),
        }))
    }
}

/// Why a controller did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid Raft configuration: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error(transparent)]
    Log(#[from] OpenError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("starting Raft: {0}")]
    Raft(String),
    #[error("listener address: {0}")]
    Listener(#[from] std::io::Error),
}

/// A running controller: its Raft, and the gRPC server through which its peers reach it.
///
/// Stop it with [`Controller::shutdown`]. Dropping it stops the server at once but leaves stopping the Raft
/// to the drop of its last handle.
#[derive(Debug)]
pub struct Controller {
    id: NodeId,
    addr: SocketAddr,
    raft: Raft,
    images: watch::Receiver<MetadataImage>,
    figures: ControllerFigures,
    session_checks: JoinHandle<()>,
    /// Steps this controller down when it is active but cut off from a majority ([`crate::check_quorum`]).
    check_quorum: JoinHandle<()>,
    stop_server: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

/// Opens the metadata log and state machine of controller `id` in `<data_dir>/__cluster_metadata-0/`,
/// builds its Raft with `config`, and serves the Raft RPCs on `listener` until [`Controller::shutdown`].
///
/// The cluster is not initialized here: on a new cluster, call `initialize` on one controller's
/// [`Controller::raft`] with the voters.
pub async fn start(
    id: NodeId,
    data_dir: &Path,
    listener: TcpListener,
    config: openraft::Config,
) -> Result<Controller, StartError> {
    start_with(id, data_dir, listener, config, QuorumSettings::default()).await
}

/// [`start`] with the settings of the active controller's duties.
pub async fn start_with(
    id: NodeId,
    data_dir: &Path,
    listener: TcpListener,
    config: openraft::Config,
    settings: QuorumSettings,
) -> Result<Controller, StartError> {
    let addr = listener.local_addr()?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    start_on(id, data_dir, addr, incoming, Network::new(id), config, settings).await
}

/// [`start`] over any transport: serves the Raft RPCs on the connections `incoming` yields (`addr` is where
/// they are accepted, reported by [`Controller::addr`]) and reaches the peers through `network`.
///
/// A failed accept is skipped (tonic's rule); the server stops accepting when `incoming` ends.
///
/// `config.enable_pre_vote` left at `None` means on here (openraft's own default is off).
pub async fn start_on<I, IO, IE>(
    id: NodeId,
    data_dir: &Path,
    addr: SocketAddr,
    incoming: I,
    network: Network,
    config: openraft::Config,
    settings: QuorumSettings,
) -> Result<Controller, StartError>
where
    I: Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let mut config = config;
    // Pre-vote, unless the caller chose: a controller that cannot win an election (cut off, or behind) first
    // asks whether it would win, and raises its term only if a majority would vote for it. Without it, a
    // controller cut off from its peers raises its term at every election timeout, and when it returns the
    // higher term makes the healthy active controller step down and the quorum elect again.
    config.enable_pre_vote = Some(config.enable_pre_vote.unwrap_or(true));
    let config = Arc::new(config.validate()?);
    let dir: PathBuf = data_dir.join(METADATA_LOG_DIR);
    let log = LogStore::open(&dir)?;
    let state_machine = StateMachine::open(&dir)?;
    let images = state_machine.subscribe();
    let feed = state_machine.feed();
    let raft = Raft::new(id, Arc::clone(&config), network, log, state_machine)
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let check_interval = session_check_interval(settings.session_timeout_ms);
    let metrics = Arc::new(ControllerMetrics::default());
    let figures = ControllerFigures::new(id, raft.clone(), feed.clone(), metrics.clone());
    let quorum = Quorum::new(id, raft.clone(), feed, settings, metrics);
    let session_checks = quorum.spawn_session_checks(check_interval);
    let check_quorum = check_quorum::spawn(id, raft.clone(), &config);

    let (stop_server, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RaftGrpc::new(raft.clone()).into_service())
            .add_service(QuorumGrpc::new(Arc::clone(&quorum)).into_service())
            .serve_with_incoming_shutdown(incoming, async {
                // A dropped sender stops the server too.
                let _ = stopped.await;
            }),
    );
    tracing::info!(id, %addr, "controller started");
    Ok(Controller {
        id,
        addr,
        raft,
        images,
        figures,
        session_checks,
        check_quorum,
        stop_server: Some(stop_server),
        server: Some(server),
    })
}

impl Controller {
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Where the Raft RPCs are served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// A receiver of the state machine's image after each applied run of entries.
    pub fn images(&self) -> watch::Receiver<MetadataImage> {
        self.images.clone()
    }

    /// What renders this controller's figures on `/metrics`.
    pub fn figures(&self) -> ControllerFigures {
        self.figures.clone()
    }

    /// Stops serving, then stops the Raft. Open RPC connections are given [`SERVER_DRAIN_TIMEOUT`] to close.
    pub async fn shutdown(mut self) {
        self.session_checks.abort();
        self.check_quorum.abort();
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(id = self.id, error = %e, "controller Raft did not stop cleanly");
        }
        if let Some(mut server) = self.server.take() {
            match tokio::time::timeout(SERVER_DRAIN_TIMEOUT, &mut server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(id = self.id, error = %e, "controller RPC server failed"),
                Ok(Err(e)) => tracing::warn!(id = self.id, error = %e, "controller RPC server task failed"),
                Err(_) => server.abort(),
            }
        }
        tracing::info!(id = self.id, "controller stopped");
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.session_checks.abort();
        self.check_quorum.abort();
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}
