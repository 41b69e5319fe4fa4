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
//! - `replica`: hosted partitions, their logs, their replication state (role, ISR, high watermark), and
//!   waking fetches and produces that wait.
//! - `reconcile`: acting on each new metadata image: hosting, leading, following, deleting partitions.
//! - `fetcher`: replica fetchers, pulling followed partitions from their leaders.
//! - `producers`: idempotent producers: producer ids and per-partition sequence state.
//! - `groups`: the group coordinator (join, sync, heartbeat, sessions) and committed offsets.
//! - `metadata`: node identity, and the metadata image this broker follows from the controllers.
//! - `settings`: broker settings with Kafka's names and the topic defaults they imply.
//! - [`config`]: `strata server` flags, environment and config file.
//! - `http`: `/health` and `/metrics`.
//!
//! Errors: library-facing code uses `anyhow` at the edges (start-up, files); Kafka-visible failures are
//! `kafka_protocol::ResponseError` codes chosen in one place per kind (`broker` for topics, each API file
//! for its storage errors).

pub mod api;
mod broker;
pub mod config;
mod fetcher;
mod groups;
mod http;
mod metadata;
mod producers;
mod reconcile;
mod replica;
pub mod server;
mod settings;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use strata_controller::client::{self as controller_client, ControllerClient};
use strata_controller::proto::controller as pb;
use strata_controller::proto::metadata::Listener;
use strata_controller::proto::raft::ControllerNode;
use strata_controller::{Controller, QuorumSettings};
use strata_storage::{LogManager, ManagerConfig};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::broker::{Advertised, Broker};
use crate::config::ServerConfig;
use crate::metadata::{MetadataView, NodeIdentity};
use crate::producers::ProducerIds;
use crate::replica::ReplicaManager;

/// How long a stopping broker waits for the controller to move its leaderships away.
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// The Raft timings of the metadata quorum: a leader that stops is replaced within about a second.
const RAFT_HEARTBEAT_MS: u64 = 100;
const RAFT_ELECTION_TIMEOUT_MS: (u64, u64) = (500, 1000);

/// Runs a node until `shutdown` is cancelled: its controller (a voter of the metadata quorum) and its
/// broker, as `config.roles` says. Stopping drains connections, moves this broker's leaderships away,
/// flushes every log and writes the checkpoints and the clean-shutdown marker.
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let seed = config.controller_voters.as_ref().map(|voters| {
        let mut named: Vec<String> = voters.iter().map(|(id, addr)| format!("{id}@{addr}")).collect();
        named.sort();
        named.join(",")
    });
    let identity = NodeIdentity::load_or_create(&config.data_dir, config.node_id, seed.as_deref())?;
    let controller = match config.roles.controller {
        true => Some(start_controller(&config).await?),
        false => None,
    };
    let voters = match (&config.controller_voters, &controller) {
        (Some(voters), _) => voters.clone(),
        (None, Some(controller)) => vec![(controller.id(), controller.addr().to_string())],
        (None, None) => unreachable!("a broker-only node is configured with voters"),
    };
    let result = if config.roles.broker {
        run_broker(&config, identity, &voters, shutdown).await
    } else {
        info!(node_id = config.node_id, "controller-only node is serving");
        shutdown.cancelled().await;
        Ok(())
    };
    if let Some(controller) = controller {
        controller.shutdown().await;
    }
    result
}

/// Starts this node's controller on `--controller-listen`, and on a quorum's first start writes the
/// voters as its first membership.
async fn start_controller(config: &ServerConfig) -> anyhow::Result<Controller> {
    let listener = tokio::net::TcpListener::bind(&config.controller_listen)
        .await
        .with_context(|| format!("binding the controller listener on {}", config.controller_listen))?;
    let addr = listener.local_addr()?;
    info!(%addr, "controller listener ready");
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
    let controller = strata_controller::start_with(id, &config.data_dir, listener, raft_config, settings)
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

async fn run_broker(
    config: &ServerConfig,
    identity: NodeIdentity,
    voters: &[(u64, String)],
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let producer_ids = ProducerIds::open(&config.data_dir, config.node_id)?;
    let (data_dir, log_defaults) = (config.data_dir.clone(), config.settings.log.clone());
    let (logs, report) =
        tokio::task::spawn_blocking(move || LogManager::open(data_dir, log_defaults, ManagerConfig::default()))
            .await?
            .context("opening the data directory")?;
    info!(
        logs = report.logs,
        clean = report.clean_shutdown,
        recovered = report.logs_recovered,
        "storage ready"
    );
    let logs = Arc::new(logs);
    let kafka = server::bind(&config.listen).await?;
    let (host, port) = match config.advertise.clone() {
        Some(advertise) => advertise,
        None => config::parse_advertise(&kafka.local_addr()?.to_string())
            .context("the listener is on a wildcard address; set --advertise")?,
    };
    let client = Arc::new(ControllerClient::new(voters)?);
    let (stop_following, following) = tokio::sync::watch::channel(false);
    let local_controller = config.roles.controller.then_some(config.node_id as u64);
    let followed = controller_client::follow(client.clone(), local_controller, following);
    let broker = Arc::new(Broker {
        identity,
        advertised: Advertised { host, port },
        settings: config.settings.clone(),
        // Each run registers anew; a later run has a larger incarnation (the clock moves on between runs).
        incarnation: now_ms().max(1) as u64 * 1000,
        metadata: MetadataView::new(followed),
        controller: client,
        producer_ids,
        replicas: ReplicaManager::new(logs.clone()),
        fetchers: Default::default(),
        metrics: Default::default(),
        groups: groups::Coordinator::new(Duration::from_millis(config.settings.group_initial_rebalance_delay_ms)),
        offsets: Default::default(),
        shutdown: shutdown.clone(),
    });
    let Some(registered_at) = register(&broker, &shutdown).await else {
        return stop_broker(&broker, &logs, None).await;
    };
    reconcile::start(broker.clone(), shutdown.clone());
    let heartbeats = tokio::spawn(heartbeat(broker.clone(), shutdown.clone()));
    let isr_checks = tokio::spawn(check_isrs(broker.clone(), shutdown.clone()));
    // Serve once this broker is unfenced and has acted on the metadata that unfenced it (and so leads
    // what it should).
    if !wait_until_ready(&broker, registered_at, &shutdown).await {
        heartbeats.abort();
        isr_checks.abort();
        return stop_broker(&broker, &logs, None).await;
    }
    for (tp, _) in logs.logs() {
        if broker.replicas.get(&tp).is_none() {
            warn!(partition = %tp, "a log on disk belongs to no partition of this broker; leaving it untouched");
        }
    }
    let upkeep = logs.start_background(Duration::from_millis(config.settings.retention_check_interval_ms));
    tokio::spawn(broker.groups.clone().run_sessions(shutdown.clone()));
    let http = tokio::net::TcpListener::bind(&config.http_listen)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", config.http_listen))?;
    let http_task = tokio::spawn(http::run(http, broker.clone(), shutdown.clone()));
    info!(node_id = broker.node_id(), cluster_id = %broker.identity.cluster_id, "Strata is serving");
    server::run(kafka, broker.clone(), shutdown).await;

    info!("stopping: moving leaderships away, then flushing logs");
    controlled_shutdown(&broker).await;
    heartbeats.abort();
    isr_checks.abort();
    let _ = http_task.await;
    drop(stop_following);
    stop_broker(&broker, &logs, Some(upkeep)).await
}

async fn stop_broker(
    broker: &Broker,
    logs: &Arc<LogManager>,
    upkeep: Option<strata_storage::manager::Background>,
) -> anyhow::Result<()> {
    broker.fetchers.wake_all();
    if let Some(upkeep) = upkeep {
        upkeep.stop();
    }
    let logs = logs.clone();
    tokio::task::spawn_blocking(move || logs.close())
        .await?
        .context("closing the logs")?;
    info!("stopped cleanly");
    Ok(())
}

/// Registers this run of the broker with the active controller, retrying until it answers. Returns the
/// metadata index of the registration, or `None` if the node stops first.
async fn register(broker: &Broker, shutdown: &CancellationToken) -> Option<u64> {
    let request = pb::RegisterBrokerRequest {
        broker_id: broker.node_id(),
        incarnation: broker.incarnation,
        listeners: vec![Listener {
            name: "PLAINTEXT".into(),
            host: broker.advertised.host.clone(),
            port: broker.advertised.port as u32,
            security_protocol: "PLAINTEXT".into(),
        }],
        rack: broker.settings.rack.clone(),
    };
    loop {
        let call = broker.controller.call_active(Duration::from_secs(10), |mut client| {
            let request = request.clone();
            async move { client.register_broker(request).await }
        });
        let reply = tokio::select! {
            () = shutdown.cancelled() => return None,
            reply = call => reply,
        };
        match reply {
            Ok(reply) if reply.error_code == 0 => {
                info!(
                    broker = broker.node_id(),
                    incarnation = broker.incarnation,
                    "registered with the controller"
                );
                return Some(reply.metadata_index);
            }
            Ok(reply) => error!(code = reply.error_code, error = %reply.message, "registration refused; retrying"),
            Err(e) => warn!(error = %e, "no active controller yet; retrying registration"),
        }
    }
}

/// Waits until the metadata shows this broker unfenced and the reconciler has acted on it.
async fn wait_until_ready(broker: &Broker, registered_at: u64, shutdown: &CancellationToken) -> bool {
    let mut followed = broker.metadata.subscribe();
    let me = broker.node_id();
    let unfenced_at = followed.wait_for(|f| {
        f.index >= registered_at
            && f.image
                .broker(me)
                .is_some_and(|b| !b.fenced && b.incarnation == broker.incarnation)
    });
    let index = tokio::select! {
        () = shutdown.cancelled() => return false,
        followed = unfenced_at => match followed {
            Ok(followed) => followed.index,
            Err(_) => return false,
        },
    };
    tokio::select! {
        () = shutdown.cancelled() => false,
        done = broker.metadata.wait_for(index, Duration::MAX) => done,
    }
}

/// Tells the active controller this broker is alive every `broker.heartbeat.interval.ms`, with the
/// metadata index it has applied (which is how it gets unfenced).
async fn heartbeat(broker: Arc<Broker>, shutdown: CancellationToken) {
    let interval = Duration::from_millis(broker.settings.broker_heartbeat_interval_ms);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut followed = broker.metadata.subscribe();
    loop {
        // A new image may be what unfences this broker: tell the controller at once rather than a tick
        // later, while still fenced.
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
            _ = followed.changed(), if broker.metadata.image().broker(broker.node_id()).is_none_or(|b| b.fenced) => {}
        }
        let request = pb::BrokerHeartbeatRequest {
            broker_id: broker.node_id(),
            incarnation: broker.incarnation,
            applied_index: broker.metadata.index(),
            shutting_down: false,
        };
        let reply = broker
            .controller
            .call_active(
                interval,
                |mut client| async move { client.broker_heartbeat(request).await },
            )
            .await;
        match reply {
            Ok(reply) if reply.error_code != 0 => {
                warn!(code = reply.error_code, error = %reply.message, "heartbeat refused")
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "heartbeat not answered"),
        }
    }
}

/// Kafka's controlled shutdown: the controller fences this broker now and moves its leaderships, so
/// clients fail over at once rather than after a session timeout.
async fn controlled_shutdown(broker: &Broker) {
    let request = pb::BrokerHeartbeatRequest {
        broker_id: broker.node_id(),
        incarnation: broker.incarnation,
        applied_index: broker.metadata.index(),
        shutting_down: true,
    };
    let reply = broker
        .controller
        .call_active(CONTROLLED_SHUTDOWN_TIMEOUT, |mut client| async move {
            client.broker_heartbeat(request).await
        })
        .await;
    if let Err(e) = reply {
        warn!(error = %e, "controlled shutdown not acknowledged; the session timeout will fence this broker");
    }
}

/// On each partition this broker leads: asks the controller to shrink the ISR when followers lag past
/// `replica.lag.time.max.ms`, and to grow it when they catch up.
async fn check_isrs(broker: Arc<Broker>, shutdown: CancellationToken) {
    let lag_max = Duration::from_millis(broker.settings.replica_lag_time_max_ms);
    let mut ticks = tokio::time::interval((lag_max / 4).clamp(Duration::from_millis(50), Duration::from_millis(500)));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let image = broker.metadata.image();
        for partition in broker.replicas.all() {
            let Some(change) = partition.wanted_isr(broker.node_id(), lag_max) else {
                continue;
            };
            let Some(topic_id) = image.topic_by_name(&partition.tp.topic).map(|t| t.id) else {
                continue;
            };
            partition.set_isr_change_pending(true);
            info!(partition = %partition.tp, isr = ?change.isr, "asking the controller to change the ISR");
            let broker = broker.clone();
            tokio::spawn(async move {
                if let Err(failure) = broker.alter_isr(&partition.tp, topic_id, change).await {
                    warn!(partition = %partition.tp, error = %failure.message, "ISR change refused");
                    partition.set_isr_change_pending(false);
                }
            });
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
