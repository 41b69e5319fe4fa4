//! Strata's broker: serves Kafka clients and stores their partitions.
//!
//! # Layout
//!
//! - [`server`]: the Kafka listener: connections, frames, requests in, responses out, clean drain.
//! - `api`: one file per Kafka API and the one dispatch `match`; `api::SUPPORTED` is what ApiVersions
//!   advertises.
//! - `broker`: the state every request sees, and topic operations shared by several APIs; Kafka error
//!   codes for topic failures are decided there.
//! - `replica`: hosted partitions, their logs, and waking fetches that wait for data.
//! - `producers`: idempotent producers: producer ids and per-partition sequence state.
//! - `groups`: the group coordinator (join, sync, heartbeat, sessions) and committed offsets.
//! - `metadata`: node identity and the topic list, persisted in the data directory (a single node's
//!   stand-in for the controller quorum).
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
mod groups;
mod http;
mod metadata;
mod producers;
mod replica;
pub mod server;
mod settings;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use strata_storage::{LogManager, ManagerConfig};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::broker::{Advertised, Broker};
use crate::config::ServerConfig;
use crate::metadata::{NodeIdentity, TopicStore};
use crate::producers::ProducerIds;
use crate::replica::ReplicaManager;

/// Runs a single-node server until `shutdown` is cancelled, then drains connections, flushes every log and
/// writes the checkpoints and the clean-shutdown marker.
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let identity = NodeIdentity::load_or_create(&config.data_dir, config.node_id)?;
    let topics = TopicStore::open(&config.data_dir)?;
    let producer_ids = ProducerIds::open(&config.data_dir)?;
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
    let broker = Arc::new(Broker {
        identity,
        advertised: Advertised { host, port },
        settings: config.settings.clone(),
        topics,
        producer_ids,
        replicas: ReplicaManager::new(logs.clone()),
        metrics: Default::default(),
        groups: groups::Coordinator::new(Duration::from_millis(config.settings.group_initial_rebalance_delay_ms)),
        offsets: Default::default(),
        shutdown: shutdown.clone(),
    });
    broker.host_all()?;
    broker.offsets.load(&broker).context("loading committed offsets")?;
    tokio::spawn(broker.groups.clone().run_sessions(shutdown.clone()));
    for (tp, _) in logs.logs() {
        if broker.replicas.get(&tp).is_none() {
            warn!(partition = %tp, "a log on disk belongs to no known topic; leaving it untouched");
        }
    }
    let upkeep = logs.start_background(Duration::from_millis(config.settings.retention_check_interval_ms));

    let http = tokio::net::TcpListener::bind(&config.http_listen)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", config.http_listen))?;
    let http_task = tokio::spawn(http::run(http, broker.clone(), shutdown.clone()));
    info!(node_id = broker.node_id(), cluster_id = %broker.identity.cluster_id, "Strata is serving");
    server::run(kafka, broker.clone(), shutdown).await;

    info!("stopping: flushing logs");
    let _ = http_task.await;
    upkeep.stop();
    tokio::task::spawn_blocking(move || logs.close())
        .await?
        .context("closing the logs")?;
    info!("stopped cleanly");
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
