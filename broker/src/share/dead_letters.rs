//! The dead-letter topic of a share group: records archived without being accepted (a member REJECTed
//! them, or they were delivered `group.share.delivery.count.limit` times without being accepted) are copied
//! to the topic the group's `errors.deadletterqueue.topic.name` names, when it names one. This is Strata's own
//! group config, modelled on KIP-1191, which no Kafka release has yet.
//!
//! A copy keeps the record's key, value, headers and timestamp, and adds headers naming where it came from
//! and why: `__dlq.errors.topic`, `__dlq.errors.partition`, `__dlq.errors.offset`, `__dlq.errors.group.id`,
//! `__dlq.errors.delivery.count` and `__dlq.errors.reason` (`rejected` or `delivery-limit`). It goes to the
//! dead-letter topic's partition of the same index (modulo its partition count), through the topic's leader
//! with acks=all, as any producer's would; the topic is created with the broker defaults if it does not
//! exist and `auto.create.topics.enable` allows.
//!
//! The share-partition lock is never held while writing: archived records are queued (at most
//! [`QUEUE_RECORDS_MAX`]; beyond that a copy is dropped and the log says so) and one task writes them.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use strata_protocol::client::{Acks, BatchBuilder, Client, Headers};
use strata_storage::ReadLimits;
use strata_storage::log::Log;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::partition::{DeadLetter, DeadLetterReason};
use crate::broker::Broker;
use crate::replica::ClusterView;

/// The most copies waiting to be written.
pub const QUEUE_RECORDS_MAX: usize = 10_000;
/// How long one copy is retried (leader moves, the topic being created) before it is given up.
const RETRY_FOR: Duration = Duration::from_secs(30);
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// One record to copy to a dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetterRecord {
    pub dead_letter_topic: String,
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: u64,
    pub delivery_count: u16,
    pub reason: DeadLetterReason,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Headers,
    pub timestamp_ms: i64,
}

/// The queue of copies, and its writer.
#[derive(Debug)]
pub struct DeadLetters {
    tx: mpsc::Sender<DeadLetterRecord>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<DeadLetterRecord>>>,
}

impl Default for DeadLetters {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_RECORDS_MAX);
        Self {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
        }
    }
}

impl DeadLetters {
    /// Queues copies of the `dead` records of `log` (partition `topic`/`partition`) for `dead_letter_topic`.
    pub fn queue(
        &self,
        dead_letter_topic: &str,
        group: &str,
        (topic, partition): (&str, i32),
        log: &Log,
        dead: &[DeadLetter],
    ) {
        for letter in dead {
            let Some(found) = read_record(log, letter.offset) else {
                warn!(%group, topic, partition, offset = letter.offset, "a dead letter's record is gone from the log");
                continue;
            };
            let record = DeadLetterRecord {
                dead_letter_topic: dead_letter_topic.to_owned(),
                group: group.to_owned(),
                topic: topic.to_owned(),
                partition,
                offset: letter.offset,
                delivery_count: letter.delivery_count,
                reason: letter.reason,
                key: found.key,
                value: found.value,
                headers: found.headers,
                timestamp_ms: found.timestamp,
            };
            if self.tx.try_send(record).is_err() {
                error!(%group, topic, partition, offset = letter.offset, "the dead-letter queue is full: copy dropped");
            }
        }
    }

    /// Starts the writer; it runs until the broker shuts down.
    pub fn start(broker: Arc<Broker>) {
        let Some(mut rx) = broker.shares.dead_letters.rx.lock().ok().and_then(|mut rx| rx.take()) else {
            return;
        };
        tokio::spawn(async move {
            let mut connections: HashMap<i32, Client> = HashMap::new();
            loop {
                let record = tokio::select! {
                    record = rx.recv() => match record {
                        Some(record) => record,
                        None => return,
                    },
                    () = broker.shutdown.cancelled() => return,
                };
                write(&broker, &mut connections, &record).await;
            }
        });
    }
}

/// The record at `offset` of `log`, decoded.
fn read_record(log: &Log, offset: u64) -> Option<kafka_protocol::records::Record> {
    let limits = ReadLimits {
        max_bytes: 1,
        max_offset: None,
        min_one_batch: true,
    };
    let read = log.read(offset, limits).ok()?;
    let mut bytes = Bytes::from(read.records);
    let records = RecordBatchDecoder::decode(&mut bytes).ok()?;
    records.records.into_iter().find(|r| r.offset == offset as i64)
}

/// Writes one copy, retrying while the topic is created or its leader moves.
async fn write(broker: &Broker, connections: &mut HashMap<i32, Client>, record: &DeadLetterRecord) {
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    let mut headers = record.headers.clone();
    let mut header = |name: &'static str, value: String| {
        headers.insert(StrBytes::from_static_str(name), Some(Bytes::from(value)));
    };
    header("__dlq.errors.topic", record.topic.clone());
    header("__dlq.errors.partition", record.partition.to_string());
    header("__dlq.errors.offset", record.offset.to_string());
    header("__dlq.errors.group.id", record.group.clone());
    header("__dlq.errors.delivery.count", record.delivery_count.to_string());
    let reason = match record.reason {
        DeadLetterReason::Rejected => "rejected",
        DeadLetterReason::DeliveryLimit => "delivery-limit",
    };
    header("__dlq.errors.reason", reason.to_owned());
    loop {
        let attempt = async {
            let topic = broker
                .auto_create(&record.dead_letter_topic)
                .await
                .map_err(|f| f.message)?
                .ok_or("the dead-letter topic does not exist and auto.create.topics.enable is off")?;
            let partition = record.partition.rem_euclid(topic.partitions.max(1));
            let image = broker.metadata.image();
            let leader = image
                .topic_by_name(&topic.name)
                .and_then(|t| t.partitions.get(&partition))
                .map(|p| p.leader)
                .filter(|leader| *leader >= 0)
                .ok_or("the dead-letter partition has no leader")?;
            let client = match connections.entry(leader) {
                Entry::Occupied(client) => client.into_mut(),
                Entry::Vacant(slot) => {
                    let addr = broker
                        .metadata
                        .broker_address(leader)
                        .ok_or("the leader has no address")?;
                    slot.insert(Client::connect(&addr).await.map_err(|e| e.to_string())?)
                }
            };
            let mut batch = BatchBuilder::new(Compression::None);
            batch.push(
                record.key.clone(),
                record.value.clone(),
                headers.clone(),
                record.timestamp_ms,
            );
            let batch = batch.build().map_err(|e| e.to_string())?;
            let written = client.produce(&topic.name, partition, Acks::All, batch).await;
            if written.is_err() {
                connections.remove(&leader);
            }
            written.map(|offset| (partition, offset)).map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok((partition, offset)) => {
                info!(group = %record.group, topic = %record.topic, partition = record.partition, offset = record.offset, reason, dead_letter_topic = %record.dead_letter_topic, dead_letter_partition = partition, dead_letter_offset = ?offset, "dead letter written");
                return;
            }
            Err(why) if tokio::time::Instant::now() >= deadline || broker.shutdown.is_cancelled() => {
                error!(group = %record.group, topic = %record.topic, offset = record.offset, %why, "dead letter not written");
                return;
            }
            Err(_) => tokio::time::sleep(RETRY_BACKOFF).await,
        }
    }
}
