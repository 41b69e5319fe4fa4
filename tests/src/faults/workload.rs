//! What the clients do, and the history they leave: producers sending unique values with `acks=all`, each
//! send recorded as acknowledged (with its partition and offset), failed or unknown; a consumer in a group
//! committing as it goes.
//!
//! Every value is `{producer}-{lane}-{seq}`. A lane sends one record at a time and waits for its outcome,
//! so among a lane's acknowledged records acknowledgement order is offset order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

/// The topic the workload writes.
pub const TOPIC: &str = "faults";
pub const PARTITIONS: i32 = 3;
/// Lanes per producer: records in flight at once.
const LANES: usize = 4;
/// How long librdkafka tries one record (its retries included) before giving up on it.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// The consumer group of the workload's consumer.
pub const GROUP: &str = "faults-group";

/// How one send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged at this partition and offset.
    Acked { partition: i32, offset: i64 },
    /// Refused or timed out: it may or may not have been written.
    Unknown(String),
}

/// One send: its value, the partition it was sent to, its outcome and when it was sent and answered.
#[derive(Debug, Clone)]
pub struct Send {
    pub producer: String,
    pub lane: usize,
    pub seq: u64,
    pub value: String,
    pub partition: i32,
    pub outcome: Outcome,
    pub sent: Instant,
    pub answered: Instant,
}

/// Everything the clients saw.
#[derive(Debug, Default)]
pub struct History {
    pub sends: Vec<Send>,
    /// The consumer's commits: (partition, committed offset).
    pub commits: Vec<(i32, i64)>,
    pub consumed: usize,
}

/// A producer of the workload: its name and whether it is idempotent.
#[derive(Debug, Clone)]
pub struct ProducerSpec {
    pub name: String,
    pub idempotent: bool,
}

/// Runs the workload's producers and consumer against `bootstrap` until `stop` is set; returns the history.
pub async fn run(bootstrap: String, producers: Vec<ProducerSpec>, stop: Arc<AtomicBool>) -> History {
    let history = Arc::new(Mutex::new(History::default()));
    let mut tasks = Vec::new();
    for spec in producers {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("broker.address.family", "v4")
            .set("acks", "all")
            .set("enable.idempotence", spec.idempotent.to_string())
            .set("message.timeout.ms", MESSAGE_TIMEOUT.as_millis().to_string())
            .set("linger.ms", "1")
            .create()
            .expect("a producer");
        for lane in 0..LANES {
            let (producer, spec, history, stop) = (producer.clone(), spec.clone(), history.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let value = format!("{}-{lane}-{seq}", spec.name);
                    let partition = ((seq as usize + lane) % PARTITIONS as usize) as i32;
                    let sent = Instant::now();
                    let record = FutureRecord::<(), _>::to(TOPIC).partition(partition).payload(&value);
                    let outcome = match producer.send(record, Timeout::Never).await {
                        Ok(delivery) => Outcome::Acked {
                            partition: delivery.partition,
                            offset: delivery.offset,
                        },
                        Err((e, _)) => Outcome::Unknown(e.to_string()),
                    };
                    history.lock().unwrap_or_else(PoisonError::into_inner).sends.push(Send {
                        producer: spec.name.clone(),
                        lane,
                        seq,
                        value,
                        partition,
                        outcome,
                        sent,
                        answered: Instant::now(),
                    });
                    seq += 1;
                }
            }));
        }
    }
    let consumer = {
        let (bootstrap, history, stop) = (bootstrap.clone(), history.clone(), stop.clone());
        tokio::task::spawn_blocking(move || consume(&bootstrap, &history, &stop))
    };
    for task in tasks {
        task.await.expect("a producer lane panicked");
    }
    consumer.await.expect("the consumer panicked");
    Arc::try_unwrap(history)
        .expect("every task is done")
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A group consumer that commits what it consumed after every poll that returned records.
fn consume(bootstrap: &str, history: &Mutex<History>, stop: &AtomicBool) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("a consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribing");
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let (partition, next) = (message.partition(), message.offset() + 1);
        drop(message);
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(TOPIC, partition, Offset::Offset(next))
            .expect("a partition");
        let mut history = history.lock().unwrap_or_else(PoisonError::into_inner);
        history.consumed += 1;
        // A failed commit (a rebalance, a coordinator moving) is simply not recorded.
        if consumer.commit(&offsets, CommitMode::Sync).is_ok() {
            history.commits.push((partition, next));
        }
    }
}

/// Reads every partition of [`TOPIC`] through `bootstrap` from its start to its high watermark; returns
/// (partition, offset, value) of every record, and the high watermarks.
pub fn read_all(bootstrap: &str, deadline: Instant) -> (Vec<(i32, i64, String)>, Vec<i64>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", "faults-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let mut records = Vec::new();
    let mut high_watermarks = Vec::new();
    for partition in 0..PARTITIONS {
        let high = loop {
            match consumer.fetch_watermarks(TOPIC, partition, Duration::from_secs(5)) {
                Ok((_, high)) => break high,
                Err(e) => assert!(Instant::now() < deadline, "watermarks of partition {partition}: {e}"),
            }
        };
        high_watermarks.push(high);
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(TOPIC, partition, Offset::Beginning)
            .expect("a partition");
        consumer.assign(&assignment).expect("assigning");
        let mut next = 0;
        while next < high {
            assert!(
                Instant::now() < deadline,
                "read partition {partition} to {next} of {high}"
            );
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
                    records.push((partition, message.offset(), value));
                    next = message.offset() + 1;
                }
                Some(Err(e)) => panic!("reading partition {partition}: {e}"),
                None => {}
            }
        }
    }
    (records, high_watermarks)
}

/// The group's committed offsets, by partition.
pub fn committed(bootstrap: &str) -> Vec<(i32, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", GROUP)
        .create()
        .expect("a consumer");
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(TOPIC, partition);
    }
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .expect("the group's committed offsets");
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect()
}
