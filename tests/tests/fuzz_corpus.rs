//! Replays the committed inputs of every fuzz target through the target's body (`strata_tests::fuzz`), on
//! stable and without libFuzzer: the corpus (`fuzz/corpus/<target>/`, what the fuzzer kept because it reached
//! new code) and the crashes it once found (`fuzz/regressions/<target>/`, kept apart so that minimizing the
//! corpus never drops them). A file whose replay panics is named in the failure.

use std::panic;
use std::path::{Path, PathBuf};

use strata_tests::fuzz;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, in name order; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|entry| entry.expect("a directory entry").path()).collect();
    files.sort();
    files
}

/// The corpus of `target`, then its regressions.
fn inputs(target: &str) -> Vec<PathBuf> {
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(!corpus.is_empty(), "{target}: no corpus in fuzz/corpus/{target}");
    let regressions = files(&fuzz_dir().join("regressions").join(target));
    corpus.into_iter().chain(regressions).collect()
}

fn replay(target: &str) {
    let (_, body) = fuzz::TARGETS
        .into_iter()
        .find(|(name, _)| *name == target)
        .expect("a target of strata_tests::fuzz");
    let panicked: Vec<String> = inputs(target)
        .into_iter()
        .filter(|file| {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            panic::catch_unwind(|| body(&data)).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(panicked.is_empty(), "{target}: the replay of {panicked:#?} panicked");
}

#[test]
fn every_target_has_a_corpus() {
    for (target, _) in fuzz::TARGETS {
        inputs(target);
    }
}

#[test]
fn request_decode_corpus() {
    replay("request_decode");
}

#[test]
fn stored_batch_corpus() {
    replay("stored_batch");
}

#[test]
fn controller_record_corpus() {
    replay("controller_record");
}

/// Writes the seeds the corpus was grown from into `fuzz/corpus/<target>/seed-*`: the librdkafka requests
/// of `broker/tests/fixtures/librdkafka/`, the record batches inside its produce requests, batches of every codec and shape the storage builders make, and encoded controller records, entries and
/// a snapshot. Run it, then fuzz, then minimize (see `fuzz/README.md`):
///
/// ```sh
/// cargo test -p strata-tests --test fuzz_corpus -- --ignored write_seeds
/// ```
#[test]
#[ignore = "writes into fuzz/corpus; run by hand when reseeding"]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };
    for (name, frame) in seeds::librdkafka_requests(&root) {
        write("request_decode", &name, &frame);
        for (i, batch) in seeds::produced_batches(&frame).iter().enumerate() {
            write("stored_batch", &format!("{name}-{i}"), batch);
        }
    }
    for (name, batch) in seeds::built_batches() {
        write("stored_batch", &name, &batch);
    }
    for (name, bytes) in seeds::controller_messages() {
        write("controller_record", &name, &bytes);
    }
}

mod seeds {
    use std::path::Path;

    use kafka_protocol::messages::RequestKind;
    use prost::Message;
    use strata_controller::MetadataImage;
    use strata_controller::proto::metadata::{
        BrokerIds, ConfigRecord, ConfigResourceType, FenceBroker, Listener, MetadataBatch, MetadataRecord,
        PartitionChange, PartitionRecord, RegisterBroker, RemoveTopic, TopicRecord, UnfenceBroker,
        metadata_record::Record,
    };
    use strata_controller::proto::raft;
    use strata_storage::batch::build::{self, Record as BuildRecord};
    use strata_storage::batch::{self, Compression};

    /// The captured librdkafka request frames, by file stem.
    pub fn librdkafka_requests(root: &Path) -> Vec<(String, Vec<u8>)> {
        let dir = root.join("broker/tests/fixtures/librdkafka");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "bin"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                (stem, std::fs::read(&path).unwrap())
            })
            .collect()
    }

    /// The record batches of a produce request, each on its own; nothing for any other request.
    pub fn produced_batches(frame: &[u8]) -> Vec<Vec<u8>> {
        let Ok(request) = strata_protocol::request::decode(frame.to_vec().into(), strata_broker::api::supported) else {
            return Vec::new();
        };
        let RequestKind::Produce(produce) = request.body else {
            return Vec::new();
        };
        let mut batches = Vec::new();
        for topic in &produce.topic_data {
            for partition in &topic.partition_data {
                let mut records = partition.records.as_deref().unwrap_or_default();
                while let Some(total) = batch::declared_total_bytes(records) {
                    let Some((one, rest)) = usize::try_from(total).ok().and_then(|n| records.split_at_checked(n))
                    else {
                        break;
                    };
                    batches.push(one.to_vec());
                    records = rest;
                }
            }
        }
        batches
    }

    /// Batches as the storage builders make them: every codec, keys, null keys and values, headers, a single
    /// record, an idempotent producer's, log-append time, and one compaction rebuilt.
    pub fn built_batches() -> Vec<(String, Vec<u8>)> {
        let headers: &[(&str, &[u8])] = &[("trace", b"abc"), ("empty", b"")];
        let records = [
            BuildRecord {
                key: Some(b"k1"),
                value: Some(b"first value"),
                timestamp: 1_700_000_000_000,
                headers,
            },
            BuildRecord {
                key: None,
                value: Some(b"second"),
                timestamp: 1_700_000_000_005,
                headers: &[],
            },
            BuildRecord {
                key: Some(b"k1"),
                value: None,
                timestamp: 1_700_000_000_002,
                headers: &[],
            },
        ];
        let mut out = Vec::new();
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let name = format!("{codec:?}").to_lowercase();
            out.push((format!("built-{name}"), build::encode(&records, codec)));
            out.push((format!("built-{name}-one"), build::encode(&records[..1], codec)));
        }
        out.push(("built-idempotent".to_owned(), build::idempotent(&records, 4000, 2, 17)));
        let mut log_append_time = build::encode(&records, Compression::None);
        log_append_time[21..23].copy_from_slice(&0x08i16.to_be_bytes());
        build::seal(&mut log_append_time);
        out.push(("built-log-append-time".to_owned(), log_append_time));
        let mut stored = build::encode(&records, Compression::Zstd);
        build::assign_offsets(&mut stored, 1_000_000, 7);
        let header = batch::validate(&stored).unwrap();
        let kept: Vec<_> = batch::records(&stored).unwrap().into_iter().skip(1).collect();
        out.push(("built-compacted".to_owned(), batch::rebuild(&header, &stored, &kept)));
        out
    }

    fn record(record: Record) -> MetadataRecord {
        MetadataRecord { record: Some(record) }
    }

    /// A cluster's life in metadata records: three brokers register and are unfenced, a topic of two
    /// partitions is created and configured, a leader moves, a broker is fenced, a broker setting is set,
    /// and the topic is removed.
    fn cluster_batch() -> MetadataBatch {
        const TOPIC: [u8; 16] = 0x5eed_0000_0000_4000_8000_0000_0000_0001u128.to_be_bytes();
        let mut records = Vec::new();
        for id in 1..=3 {
            records.push(record(Record::RegisterBroker(RegisterBroker {
                broker_id: id,
                incarnation: 7,
                listeners: vec![Listener {
                    name: "PLAINTEXT".into(),
                    host: "10.0.0.1".into(),
                    port: 9092,
                    security_protocol: "PLAINTEXT".into(),
                }],
                rack: Some(format!("rack-{}", id % 2)),
            })));
            records.push(record(Record::UnfenceBroker(UnfenceBroker {
                broker_id: id,
                incarnation: 7,
            })));
        }
        records.push(record(Record::Topic(TopicRecord {
            name: "orders".into(),
            topic_id: TOPIC.to_vec(),
        })));
        for (partition, replicas) in [(0, vec![1, 2, 3]), (1, vec![2, 3, 1])] {
            records.push(record(Record::Partition(PartitionRecord {
                topic_id: TOPIC.to_vec(),
                partition,
                leader: replicas[0],
                isr: replicas.clone(),
                replicas,
                leader_epoch: 0,
                partition_epoch: 0,
            })));
        }
        records.push(record(Record::Config(ConfigRecord {
            resource_type: ConfigResourceType::Topic.into(),
            resource_name: "orders".into(),
            key: "cleanup.policy".into(),
            value: Some("compact".into()),
        })));
        records.push(record(Record::PartitionChange(PartitionChange {
            topic_id: TOPIC.to_vec(),
            partition: 0,
            leader: Some(2),
            isr: Some(BrokerIds { ids: vec![2, 3] }),
            replicas: None,
        })));
        records.push(record(Record::FenceBroker(FenceBroker {
            broker_id: 1,
            incarnation: 7,
        })));
        records.push(record(Record::Config(ConfigRecord {
            resource_type: ConfigResourceType::Broker.into(),
            resource_name: String::new(),
            key: "log.retention.ms".into(),
            value: Some("3600000".into()),
        })));
        records.push(record(Record::RemoveTopic(RemoveTopic {
            topic_id: TOPIC.to_vec(),
        })));
        MetadataBatch { records }
    }

    /// Encoded `MetadataBatch`es (the whole history, and the image it leaves as one batch), Raft entries of
    /// each payload, and a snapshot.
    pub fn controller_messages() -> Vec<(String, Vec<u8>)> {
        let history = cluster_batch();
        // Everything but the removal, so the image still holds a topic, its partitions and its settings.
        let before_removal = MetadataBatch {
            records: history.records[..history.records.len() - 1].to_vec(),
        };
        let image = MetadataImage::empty().replay_batch(&before_removal).unwrap();
        MetadataImage::empty().replay_batch(&history).unwrap();
        let image_records = MetadataBatch {
            records: image.to_records(),
        };
        let log_id = |index| raft::LogId {
            term: 3,
            node_id: 1,
            index,
        };
        let membership = raft::Membership {
            configs: vec![raft::NodeIds { ids: vec![1, 2, 3] }],
            nodes: (1..=3)
                .map(|id| (id, raft::ControllerNode::new(format!("10.0.0.{id}:9093"))))
                .collect(),
        };
        let entry = |index, payload| raft::Entry {
            log_id: Some(log_id(index)),
            payload: Some(payload),
        };
        let snapshot = raft::Snapshot {
            last_log_id: Some(log_id(40)),
            last_membership: Some(raft::StoredMembership {
                log_id: Some(log_id(1)),
                membership: Some(membership.clone()),
            }),
            records: image.to_records(),
        };
        vec![
            ("batch-history".to_owned(), history.encode_to_vec()),
            ("batch-image".to_owned(), image_records.encode_to_vec()),
            (
                "entry-records".to_owned(),
                entry(41, raft::entry::Payload::Records(history)).encode_to_vec(),
            ),
            (
                "entry-blank".to_owned(),
                entry(42, raft::entry::Payload::Blank(raft::Blank {})).encode_to_vec(),
            ),
            (
                "entry-membership".to_owned(),
                entry(1, raft::entry::Payload::Membership(membership)).encode_to_vec(),
            ),
            ("snapshot".to_owned(), snapshot.encode_to_vec()),
        ]
    }
}
