//! Strata's node: a broker that serves Kafka clients and stores and replicates their partitions, a
//! controller of the metadata quorum (the `strata_controller` crate), or both.
//!
//! # Layout
//!
//! - [`server`]: the Kafka listener: connections, frames, requests in, responses out, clean drain.
//! - `api`: one file per Kafka API and the one dispatch `match`; `api::SUPPORTED` is what ApiVersions
//!   advertises.
//! - `broker`: the state every request sees, and metadata changes shared by several APIs (sent to the active
//!   controller); Kafka error codes for topic failures are decided there.
//! - `replica`: the replica manager: hosted partitions, their logs, their replication state (role, ISR,
//!   high watermark, lease), the fetchers and the ISR upkeep, and waking fetches and produces that wait. It
//!   depends on the node only through the `ClusterView` and `ControllerChannel` traits and a `Connector`.
//! - `fetch_sessions`: KIP-227 fetch sessions: which partitions a fetch reads and which its answer carries.
//! - `fetcher`: replica fetchers, pulling followed partitions from their leaders (owned by the replica
//!   manager).
//! - `reconcile`: acting on each new metadata image: hosting, leading, following, deleting partitions.
//! - `membership`: registration with the active controller, heartbeats, readiness, controlled shutdown.
//! - `producers`: idempotent producers: producer ids and per-partition sequence state.
//! - `groups`: the group coordinator (join, sync, heartbeat, sessions; `groups::consumer`, the KIP-848
//!   consumer protocol's groups, assigned by the coordinator) and committed offsets, which live in
//!   `__consumer_offsets` partitions of the replica manager (the only part of the node they use), as do
//!   the consumer-protocol groups' own records.
//! - `metadata`: node identity, and the metadata image this broker follows from the controllers.
//! - `share`: share groups (KIP-932): membership, share sessions and share-partition state.
//! - `settings`: broker settings with Kafka's names and the topic defaults they imply.
//! - `dynamic`: settings changed at run time through the metadata: dynamic broker configs (which of them
//!   may change, and the settings in force) and group configs.
//! - [`config`]: `strata server` flags, environment and config file.
//! - `metrics`: the broker's figures on `/metrics`: recorded on the data path, or read when a page is
//!   rendered.
//! - [`offset_reset`]: moving a group's committed offsets through a Kafka client (the CLI's
//!   `group reset-offsets` and the console's reset).
//! - [`time`]: RFC 3339 timestamps to milliseconds and back.
//! - `http`: the node's HTTP port: `/health` and `/metrics`, and the routes of `console`.
//! - `console`: the web console's pages (brokers and quorum, topics, messages, groups), its access rule
//!   and CSRF check, and the throughput samples its charts draw.
//!
//! Errors: library-facing code uses `anyhow` at the edges (start-up, files); Kafka-visible failures are
//! `kafka_protocol::ResponseError` codes chosen in one place per kind (`broker` for topics, each API file
//! for its storage errors).

pub mod api;
mod broker;
pub mod config;
mod console;
mod dynamic;
mod fetch_sessions;
mod fetcher;
mod groups;
mod http;
mod membership;
mod metadata;
mod metrics;
pub mod offset_reset;
mod producers;
mod reconcile;
mod replica;
pub mod server;
mod settings;
mod share;
pub mod time;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use strata_controller::client::{self as controller_client, ControllerClient};
use strata_controller::metrics::ControllerFigures;
use strata_controller::network::{Accepted, Connect, Network};
use strata_controller::proto::raft::ControllerNode;
use strata_controller::{Controller, QuorumSettings};
use strata_protocol::metrics::Exposition;
use strata_protocol::transport::{Connector, Listener};
use strata_storage::{LogManager, ManagerConfig};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::broker::{Advertised, Broker, MetadataChanges};
use crate::config::ServerConfig;
use crate::metadata::{MetadataView, NodeIdentity};
use crate::producers::ProducerIds;
use crate::replica::{ReplicaManager, ReplicaSettings};

/// The Raft timings of the metadata quorum. A follower campaigns once it has heard nothing for the leader's
/// lease (openraft's: the longest election timeout) plus its own random election timeout, so a leader that
/// stops is replaced within 0.9 to 1.2 s; heartbeats every 100 ms keep a live leader well inside that.
const RAFT_HEARTBEAT_MS: u64 = 100;
const RAFT_ELECTION_TIMEOUT_MS: (u64, u64) = (300, 600);

/// Runs a node until `shutdown` is cancelled: its controller (a voter of the metadata quorum) and its
/// broker, as `config.roles` says. Stopping drains connections, moves this broker's leaderships away,
/// flushes every log and writes the checkpoints and the clean-shutdown marker.
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let transport = Transport::bind(&config).await?;
    run_on(config, transport, shutdown).await
}

/// What a node's connections run over (see [`strata_protocol::transport`]): the OS's TCP in `strata server`,
/// a simulated network in the simulation of whole clusters (`tests/`).
pub struct Transport {
    /// Where Kafka clients, and other brokers' replica fetchers, connect, on a node with the broker role:
    /// each listener with its name (empty without the broker role).
    pub kafka: Vec<(String, Box<dyn Listener>)>,
    /// The controller's Raft and service RPCs, on a node with the controller role.
    pub controller: Option<Box<dyn Listener>>,
    /// `/health` and `/metrics`; a simulation has none.
    pub http: Option<tokio::net::TcpListener>,
    /// Outgoing Kafka connections: this broker's replica fetchers.
    pub kafka_connect: Connector,
    /// Outgoing controller channels: Raft peers, and this broker's client of the quorum.
    pub controller_connect: Connect,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

impl Transport {
    /// The OS's TCP, with the listeners `config`'s roles need bound where it says.
    pub async fn bind(config: &ServerConfig) -> anyhow::Result<Self> {
        let controller: Option<Box<dyn Listener>> = match config.roles.controller {
            true => {
                let listener = tokio::net::TcpListener::bind(&config.controller_listen)
                    .await
                    .with_context(|| format!("binding the controller listener on {}", config.controller_listen))?;
                info!(addr = %listener.local_addr()?, "controller listener ready");
                Some(Box::new(listener))
            }
            false => None,
        };
        let mut kafka: Vec<(String, Box<dyn Listener>)> = Vec::new();
        if config.roles.broker {
            for listener in &config.listeners {
                kafka.push((
                    listener.name.clone(),
                    Box::new(server::bind(&listener.name, &listener.bind).await?),
                ));
            }
        }
        let http = tokio::net::TcpListener::bind(&config.http_listen)
            .await
            .with_context(|| format!("binding the HTTP listener on {}", config.http_listen))?;
        Ok(Self {
            kafka,
            controller,
            http: Some(http),
            kafka_connect: Connector::tcp(),
            controller_connect: Arc::new(tonic::transport::Endpoint::connect_lazy),
        })
    }
}

/// [`run`] over `transport`.
pub async fn run_on(config: ServerConfig, transport: Transport, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let seed = config.controller_voters.as_ref().map(|voters| {
        let mut named: Vec<String> = voters.iter().map(|(id, addr)| format!("{id}@{addr}")).collect();
        named.sort();
        named.join(",")
    });
    let identity = NodeIdentity::load_or_create(&config.data_dir, config.node_id, seed.as_deref())?;
    let Transport {
        kafka,
        controller: controller_listener,
        http,
        kafka_connect,
        controller_connect,
    } = transport;
    let controller = match controller_listener {
        Some(listener) => Some(start_controller(&config, listener, controller_connect.clone()).await?),
        None => None,
    };
    let voters = match (&config.controller_voters, &controller) {
        (Some(voters), _) => voters.clone(),
        (None, Some(controller)) => vec![(controller.id(), controller.addr().to_string())],
        (None, None) => unreachable!("a broker-only node is configured with voters"),
    };
    let quorum_view = controller.as_ref().map(Controller::figures);
    let result = match kafka.is_empty() {
        false => {
            let transport = BrokerTransport {
                kafka,
                http,
                kafka_connect,
                controller_connect,
            };
            run_broker(&config, identity, &voters, quorum_view, transport, shutdown).await
        }
        true => serve_controller_only(config.node_id, quorum_view, http, shutdown).await,
    };
    if let Some(controller) = controller {
        controller.shutdown().await;
    }
    result
}

/// Starts this node's controller on `--controller-listen`, and on a quorum's first start writes the
/// voters as its first membership.
async fn start_controller(
    config: &ServerConfig,
    listener: Box<dyn Listener>,
    connect: Connect,
) -> anyhow::Result<Controller> {
    let addr = listener.local_addr()?;
    let id = config.node_id as u64;
    let raft_config = openraft::Config {
        cluster_name: "strata".into(),
        heartbeat_interval: RAFT_HEARTBEAT_MS,
        election_timeout_min: RAFT_ELECTION_TIMEOUT_MS.0,
        election_timeout_max: RAFT_ELECTION_TIMEOUT_MS.1,
        ..Default::default()
    };
    let settings = QuorumSettings {
        session_timeout_ms: config.settings.broker_session_timeout_ms,
        auto_leader_rebalance: config.settings.auto_leader_rebalance,
    };
    // A failed accept is skipped by tonic's server; it stops when this stream ends, which it never does.
    let incoming = futures_util::stream::unfold(listener, |mut listener| async move {
        let accepted = listener.accept().await.map(|(io, _)| Accepted(io));
        Some((accepted, listener))
    });
    let network = Network::with_connect(id, move |endpoint| connect(endpoint));
    let controller = strata_controller::start_on(id, &config.data_dir, addr, incoming, network, raft_config, settings)
        .await
        .context("starting the controller")?;
    let voters: BTreeMap<u64, ControllerNode> = match &config.controller_voters {
        Some(voters) => voters
            .iter()
            .map(|(id, addr)| (*id, ControllerNode::new(addr.clone())))
            .collect(),
        None => BTreeMap::from([(id, ControllerNode::new(addr.to_string()))]),
    };
    let raft = controller.raft();
    if !raft.is_initialized().await.context("reading the controller state")? {
        // Every voter writes the same first membership; Raft then elects one leader among them.
        info!(voters = ?voters.keys().collect::<Vec<_>>(), "initializing the metadata quorum");
        if let Err(e) = raft.initialize(voters).await {
            warn!(error = %e, "initializing the metadata quorum: already done elsewhere");
        }
    }
    Ok(controller)
}

/// A node with only the controller role: its HTTP endpoint, with the controller's figures, until `shutdown`.
async fn serve_controller_only(
    node_id: i32,
    quorum_view: Option<ControllerFigures>,
    http: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let figures = quorum_view.expect("a controller-only node runs a controller");
    info!(node_id, "controller-only node is serving");
    match http {
        Some(http) => {
            let render: http::Render = Arc::new(move || {
                let mut page = Exposition::new();
                figures.render(&mut page);
                page.finish()
            });
            http::run(http, render, None, shutdown).await;
        }
        None => shutdown.cancelled().await,
    }
    Ok(())
}

/// What the broker role's connections run over: [`Transport`] less the controller's listener.
struct BrokerTransport {
    kafka: Vec<(String, Box<dyn Listener>)>,
    http: Option<tokio::net::TcpListener>,
    kafka_connect: Connector,
    controller_connect: Connect,
}

async fn run_broker(
    config: &ServerConfig,
    identity: NodeIdentity,
    voters: &[(u64, String)],
    quorum_view: Option<ControllerFigures>,
    transport: BrokerTransport,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let BrokerTransport {
        kafka,
        http,
        kafka_connect,
        controller_connect,
    } = transport;
    let producer_ids = ProducerIds::open(&config.data_dir, config.node_id)?;
    let metrics = Arc::new(metrics::Metrics::default());
    let (data_dir, log_defaults) = (config.data_dir.clone(), config.settings.log.clone());
    let manager_config = ManagerConfig {
        flush_observer: Some(metrics.flush_observer()),
        ..ManagerConfig::default()
    };
    let (logs, report) =
        strata_protocol::blocking::run(move || LogManager::open(data_dir, log_defaults, manager_config))
            .await?
            .context("opening the data directory")?;
    info!(
        logs = report.logs,
        clean = report.clean_shutdown,
        recovered = report.logs_recovered,
        "storage ready"
    );
    let logs = Arc::new(logs);
    let mut advertised = Vec::new();
    for ((name, listener), configured) in kafka.iter().zip(&config.listeners) {
        let (host, port) = match configured.advertised.clone() {
            Some(advertise) => advertise,
            None => config::parse_advertise(&listener.local_addr()?.to_string()).with_context(|| {
                format!("listener {name} is on a wildcard address; advertise a reachable one (--advertise, --advertised-listeners)")
            })?,
        };
        advertised.push(Advertised {
            name: name.clone(),
            host,
            port,
        });
    }
    let client = Arc::new(ControllerClient::with_connect(voters, controller_connect)?);
    let (stop_following, following) = tokio::sync::watch::channel(false);
    let local_controller = config.roles.controller.then_some(config.node_id as u64);
    let followed = controller_client::follow(client.clone(), local_controller, following);
    let metadata = Arc::new(MetadataView::new(followed, config.inter_broker_listener.clone()));
    let incarnation = next_incarnation();
    let changes = Arc::new(MetadataChanges {
        controller: client.clone(),
        metadata: metadata.clone(),
        node_id: config.node_id,
        incarnation,
    });
    let replica_settings = ReplicaSettings {
        node_id: config.node_id,
        lag_max: Duration::from_millis(config.settings.replica_lag_time_max_ms),
        session_timeout: Duration::from_millis(config.settings.broker_session_timeout_ms),
    };
    let lag_connect = kafka_connect.clone();
    let replicas = Arc::new(ReplicaManager::new(
        replica_settings,
        logs.clone(),
        metadata.clone(),
        changes.clone(),
        kafka_connect,
        shutdown.clone(),
        metrics.clone(),
    ));
    let broker = Arc::new(Broker {
        limits: server::Limits::new(&config.settings),
        identity,
        advertised,
        static_settings: config.settings.clone(),
        live_settings: std::sync::RwLock::new(Arc::new(config.settings.clone())),
        incarnation,
        metadata,
        controller: client,
        changes,
        producer_ids,
        replicas,
        metrics,
        groups: groups::Coordinator::new(groups::GroupSettings {
            initial_rebalance_delay: Duration::from_millis(config.settings.group_initial_rebalance_delay_ms),
            max_size: config.settings.group_max_size,
            consumer_session_timeout: Duration::from_millis(config.settings.group_consumer_session_timeout_ms),
            consumer_heartbeat_interval: Duration::from_millis(config.settings.group_consumer_heartbeat_interval_ms),
            consumer_max_size: config.settings.group_consumer_max_size,
        }),
        offsets: Default::default(),
        fetch_sessions: fetch_sessions::FetchSessions::new(config.settings.fetch_session_cache_slots),
        shares: share::Shares::new(&config.settings),
        shutdown: shutdown.clone(),
    });
    let Some(registered_at) = membership::register(&broker, &shutdown).await else {
        return stop_broker(&broker, &logs, None).await;
    };
    reconcile::start(broker.clone(), shutdown.clone());
    share::dead_letters::DeadLetters::start(broker.clone());
    let heartbeats = tokio::spawn(membership::heartbeat(broker.clone(), shutdown.clone()));
    let isr_checks = tokio::spawn(replica::maintain_isrs(broker.replicas.clone()));
    // Serve once this broker is unfenced and has acted on the metadata that unfenced it (and so leads
    // what it should).
    if !membership::wait_until_ready(&broker, registered_at, &shutdown).await {
        heartbeats.abort();
        isr_checks.abort();
        return stop_broker(&broker, &logs, None).await;
    }
    for (tp, _) in logs.logs() {
        if broker.replicas.get(&tp).is_none() {
            warn!(partition = %tp, "a log on disk belongs to no partition of this broker; leaving it untouched");
        }
    }
    let upkeep = logs.start_background(
        Duration::from_millis(config.settings.retention_check_interval_ms),
        // Kafka allows 0; a cleaner that never rests would take a core.
        Duration::from_millis(config.settings.cleaner_backoff_ms.max(1)),
    );
    let group_log = Arc::new(broker.group_log());
    tokio::spawn(broker.groups.clone().run_sessions(group_log, shutdown.clone()));
    let offsets_retention = groups::expiry::RetentionSettings {
        retention: Duration::from_millis(config.settings.offsets_retention_ms),
        check_interval: Duration::from_millis(config.settings.offsets_retention_check_interval_ms),
    };
    tokio::spawn(groups::expiry::run(
        broker.groups.clone(),
        broker.offsets.clone(),
        broker.replicas.clone(),
        offsets_retention,
        shutdown.clone(),
    ));
    tokio::spawn(groups::metrics::refresh_watermarks(
        broker.clone(),
        lag_connect,
        shutdown.clone(),
    ));
    let http_task = http.map(|http| {
        let console = http.local_addr().ok().map(|addr| {
            let access = console::Access::decide(addr, config.console_password.clone().map(|p| p.0));
            // The inter-broker listener: the one this node is sure to reach itself on.
            let bootstrap = broker
                .advertised
                .iter()
                .find(|a| a.name == config.inter_broker_listener)
                .or(broker.advertised.first())
                .map(|a| format!("{}:{}", a.host, a.port))
                .unwrap_or_default();
            console::Console::start(broker.clone(), access, bootstrap)
        });
        let shown = broker.clone();
        let render: http::Render = Arc::new(move || {
            let mut page = Exposition::new();
            shown.metrics.render(&shown, &mut page);
            groups::metrics::render(&shown, &mut page);
            if let Some(controller) = &quorum_view {
                controller.render(&mut page);
            }
            page.finish()
        });
        tokio::spawn(http::run(http, render, console, shutdown.clone()))
    });
    info!(node_id = broker.node_id(), cluster_id = %broker.identity.cluster_id, "Strata is serving");
    let limits = broker.limits.clone();
    let serving = kafka
        .into_iter()
        .map(|(name, listener)| server::run(listener, name.into(), limits.clone(), broker.clone(), shutdown.clone()));
    futures_util::future::join_all(serving).await;

    info!("stopping: moving leaderships away, then flushing logs");
    membership::controlled_shutdown(&broker).await;
    heartbeats.abort();
    isr_checks.abort();
    if let Some(http_task) = http_task {
        let _ = http_task.await;
    }
    drop(stop_following);
    stop_broker(&broker, &logs, Some(upkeep)).await
}

async fn stop_broker(
    broker: &Broker,
    logs: &Arc<LogManager>,
    upkeep: Option<strata_storage::manager::Background>,
) -> anyhow::Result<()> {
    broker.replicas.wake_fetchers();
    if let Some(upkeep) = upkeep {
        upkeep.stop();
    }
    let logs = logs.clone();
    strata_protocol::blocking::run(move || logs.close())
        .await?
        .context("closing the logs")?;
    info!("stopped cleanly");
    Ok(())
}

/// Runs of a broker started in this process so far.
static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// This run's incarnation. Each run registers anew, and a later run must have a larger incarnation: the
/// clock moves on between runs of a process, and runs within one process (a simulation restarting its
/// nodes within a millisecond) are told apart by a counter below the milliseconds.
fn next_incarnation() -> u64 {
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000;
    now_ms().max(1) as u64 * 1000 + run
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
