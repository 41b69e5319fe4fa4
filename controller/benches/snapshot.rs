//! Loading a metadata snapshot of 100,000 partitions (issue 4; target: under a second). Results are recorded
//! in `BENCHMARKS.md` at the workspace root.
//!
//! ```text
//! cargo bench -p strata-controller --bench snapshot             # everything (about a minute)
//! cargo bench -p strata-controller --bench snapshot -- open     # only the loads
//! cargo bench -p strata-controller --bench snapshot -- --test   # smoke test: each benchmark runs once
//! ```
//!
//! Each image is committed to a [`StateMachine`] as one batch through openraft's `apply`, and its snapshot is
//! written by openraft's snapshot builder, exactly as a running controller does; so the file on disk is the
//! one a controller would write. Benchmarks, each for two shapes of 100,000 partitions (one topic of
//! 100,000, the most a topic may have, and 1,000 topics of 100), replicas on 3 brokers:
//!
//! - `open`: [`StateMachine::open`] on that directory: read the file, check its CRC, decode it and replay its
//!   records into the image. This is what a restarted controller does before openraft replays the log
//!   tail, and the figure the target is about. Dropping the loaded state machine is not timed.
//! - `replay`: [`MetadataImage::from_records`] on the decoded records alone: the share of `open` that is
//!   replay.
//! - `write`: openraft's snapshot builder: the image to records, encoded, written to a temporary file,
//!   fsynced and renamed over the snapshot (what the leader does every `snapshot` interval).
//!
//! Data lives in temporary directories under the workspace's `target/` (override with `STRATA_BENCH_DIR`).

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::stream;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::vote::RaftLeaderId;
use strata_controller::proto::metadata::{
    Listener, MetadataBatch, MetadataRecord, PartitionRecord, RegisterBroker, TopicRecord, UnfenceBroker,
    metadata_record::Record,
};
use strata_controller::proto::raft::ControllerNode;
use strata_controller::types::{Entry, EntryPayload, LeaderId, LogId, Membership};
use strata_controller::{MetadataImage, StateMachine};
use tempfile::TempDir;
use uuid::Uuid;

/// Partitions in every snapshot benchmarked.
const PARTITIONS: usize = 100_000;
const BROKERS: i32 = 3;

/// The shapes benchmarked: (name, topics); each topic has `PARTITIONS / topics` partitions.
const SHAPES: [(&str, usize); 2] = [("1_topic", 1), ("1000_topics", 1_000)];

fn rec(record: Record) -> MetadataRecord {
    MetadataRecord { record: Some(record) }
}

fn log_id(index: u64) -> LogId {
    LogId::new(LeaderId::new(1, 1), index)
}

/// The records of `BROKERS` registered, unfenced brokers and `topics` topics sharing `PARTITIONS`
/// partitions, each on all brokers with leadership spread as placement spreads it.
fn records(topics: usize) -> Vec<MetadataRecord> {
    let mut records = Vec::with_capacity(2 * BROKERS as usize + topics + PARTITIONS);
    for broker_id in 0..BROKERS {
        records.push(rec(Record::RegisterBroker(RegisterBroker {
            broker_id,
            incarnation: 1,
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: format!("broker-{broker_id}.example.com"),
                port: 9092,
                security_protocol: "PLAINTEXT".into(),
            }],
            rack: None,
        })));
        records.push(rec(Record::UnfenceBroker(UnfenceBroker {
            broker_id,
            incarnation: 1,
        })));
    }
    let per_topic = (PARTITIONS / topics) as i32;
    for topic in 0..topics {
        let topic_id = Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 + topic as u128)
            .as_bytes()
            .to_vec();
        records.push(rec(Record::Topic(TopicRecord {
            name: format!("topic-{topic:04}"),
            topic_id: topic_id.clone(),
        })));
        records.extend((0..per_topic).map(|partition| {
            let leader = (partition + topic as i32) % BROKERS;
            let replicas: Vec<i32> = (0..BROKERS).map(|i| (leader + i) % BROKERS).collect();
            rec(Record::Partition(PartitionRecord {
                topic_id: topic_id.clone(),
                partition,
                isr: replicas.clone(),
                replicas,
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
            }))
        }));
    }
    records
}

/// A state machine directory holding the snapshot of `records`, written by openraft's snapshot builder after
/// the records were applied as one committed batch (entry 1, after the membership at entry 0). Returns the
/// directory and the snapshot's size in bytes.
fn snapshot_dir(
    runtime: &tokio::runtime::Runtime,
    base: &std::path::Path,
    records: Vec<MetadataRecord>,
) -> (TempDir, usize) {
    let dir = tempfile::tempdir_in(base).expect("a temporary directory");
    let membership = Membership::new(
        vec![BTreeSet::from([1])],
        BTreeMap::from([(1, ControllerNode::new("127.0.0.1:9093"))]),
    )
    .expect("a valid membership");
    let entries = vec![
        Entry {
            log_id: log_id(0),
            payload: EntryPayload::Membership(membership),
        },
        Entry {
            log_id: log_id(1),
            payload: EntryPayload::Normal(MetadataBatch { records }),
        },
    ];
    let bytes = runtime.block_on(async {
        let mut sm = StateMachine::open(dir.path()).expect("opening the state machine");
        sm.apply(stream::iter(entries.into_iter().map(|entry| Ok((entry, None)))))
            .await
            .expect("applying the batch");
        let partitions: usize = sm.image().topics().values().map(|t| t.partitions.len()).sum();
        assert_eq!(partitions, PARTITIONS, "the batch replays whole");
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("writing the snapshot");
        snapshot.snapshot.len()
    });
    (dir, bytes)
}

fn bench_dir() -> PathBuf {
    let dir = std::env::var_os("STRATA_BENCH_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/strata-bench"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("creating the benchmark directory");
    dir
}

fn snapshot(c: &mut Criterion) {
    // The snapshot builder writes the file on the blocking pool of a tokio runtime, as in the controller.
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let base = bench_dir();
    let mut group = c.benchmark_group("snapshot");
    // One load takes a tenth of a second or more: ten samples are plenty, and keep the run short.
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, topics) in SHAPES {
        let records = records(topics);
        let (dir, bytes) = snapshot_dir(&runtime, &base, records.clone());
        println!("snapshot/{name}: {PARTITIONS} partitions in {topics} topics, snapshot file {bytes} bytes");
        let loaded = StateMachine::open(dir.path()).expect("loading the snapshot");
        let image = loaded.image().clone();
        assert_eq!(MetadataImage::from_records(&records).expect("replay"), image);
        drop(loaded);

        group.bench_function(format!("open/{name}"), |b| {
            b.iter_with_large_drop(|| StateMachine::open(black_box(dir.path())).expect("loading the snapshot"))
        });
        group.bench_function(format!("replay/{name}"), |b| {
            b.iter_with_large_drop(|| MetadataImage::from_records(black_box(&records)).expect("replay"))
        });
        let mut sm = StateMachine::open(dir.path()).expect("loading the snapshot");
        group.bench_function(format!("write/{name}"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let mut builder = sm.get_snapshot_builder().await;
                    builder.build_snapshot().await.expect("writing the snapshot")
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, snapshot);
criterion_main!(benches);
