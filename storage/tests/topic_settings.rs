//! The topic settings that change what the leader stores or when the cleaner runs, through the log's public
//! API: `compression.type` (recompression), `message.timestamp.type` (LogAppendTime),
//! `message.timestamp.before/after.max.ms`, keys on compacted topics, the cleaner's triggers
//! (`min.cleanable.dirty.ratio`, `max.compaction.lag.ms`, `min.compaction.lag.ms`) and
//! `file.delete.delay.ms`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::now_ms;
use strata_storage::batch::build::{Record, encode, idempotent};
use strata_storage::batch::{self, BatchError, BatchHeader, Compression, RejectionKind};
use strata_storage::{
    AppendError, HANDLES_MAX_DEFAULT, HandleCache, LeaderAppend, Log, LogConfig, LogManager, ManagerConfig, OpenState,
    ReadLimits, TopicPartition,
};

const HOUR_MS: i64 = 60 * 60 * 1000;

fn config(settings: &[(&str, &str)]) -> LogConfig {
    let mut config = LogConfig::default();
    for (key, value) in settings {
        config.set(key, value).unwrap_or_else(|e| panic!("{key}={value}: {e}"));
    }
    config.check().unwrap();
    config
}

fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir, config, HandleCache::new(HANDLES_MAX_DEFAULT), OpenState::default())
        .unwrap()
        .0
}

/// A batch of `n` keyed records `key-i` = `value-i` at `timestamp`, compressed with `codec`.
fn keyed(n: usize, timestamp: i64, codec: Compression) -> Vec<u8> {
    let keys: Vec<String> = (0..n).map(|i| format!("key-{i}")).collect();
    let values: Vec<String> = (0..n).map(|i| format!("value-{i} {}", "x".repeat(i % 50))).collect();
    let recs: Vec<Record<'_>> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| Record {
            key: Some(k.as_bytes()),
            value: Some(v.as_bytes()),
            timestamp,
            headers: &[],
        })
        .collect();
    encode(&recs, codec)
}

/// Every stored batch, each checked whole (CRC included).
fn stored(log: &Log) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, ReadLimits::bytes(1 << 20)).unwrap();
        let mut rest = &read.records[..];
        while !rest.is_empty() {
            let header = batch::check_stored(rest).unwrap();
            let (one, tail) = rest.split_at(header.total_bytes());
            out.push((header, one.to_vec()));
            rest = tail;
        }
        offset = read.next_offset;
    }
    out
}

/// (offset, timestamp, key) of every record of one stored batch.
fn records_of(one: &[u8]) -> Vec<(i64, i64, Option<Vec<u8>>)> {
    batch::records(one)
        .unwrap()
        .into_iter()
        .map(|r| (r.offset, r.timestamp, r.key))
        .collect()
}

fn appended(result: Result<LeaderAppend, AppendError>) -> strata_storage::AppendInfo {
    match result.unwrap() {
        LeaderAppend::Appended(info) => info,
        other => panic!("expected an append, got {other:?}"),
    }
}

#[test]
fn a_batch_in_another_codec_is_recompressed_to_the_topics_keeping_offsets_and_producer_fields() {
    for (setting, sent, stored_as) in [
        ("zstd", Compression::Gzip, Compression::Zstd),
        ("gzip", Compression::None, Compression::Gzip),
        ("uncompressed", Compression::Lz4, Compression::None),
        ("snappy", Compression::Zstd, Compression::Snappy),
        ("lz4", Compression::Snappy, Compression::Lz4),
        ("producer", Compression::Gzip, Compression::Gzip),
        ("zstd", Compression::Zstd, Compression::Zstd),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), config(&[("compression.type", setting)]));
        // Something first, so the batch gets a base offset other than 0.
        appended(log.append_as_leader(&mut keyed(3, now_ms(), Compression::None), 0));
        let sent_batch = {
            let mut b = keyed(200, now_ms(), sent);
            // An idempotent producer's: its id, epoch and sequence must survive the rebuild.
            let plain = idempotent(&[Record::default()], 77, 2, 0);
            b[43..57].copy_from_slice(&plain[43..57]);
            batch::build::seal(&mut b);
            b
        };
        let original_records = records_of(&sent_batch);
        let info = appended(log.append_as_leader(&mut sent_batch.clone(), 0));
        assert_eq!((info.first_offset, info.last_offset), (3, 202), "{setting}");
        let batches = stored(&log);
        let (header, bytes) = &batches[1];
        batch::validate(bytes).unwrap_or_else(|e| panic!("{setting}: the stored batch is whole: {e}"));
        assert_eq!(
            header.compression().unwrap(),
            stored_as,
            "{setting}: {sent:?} is stored as {stored_as:?}"
        );
        assert_eq!(
            (
                header.base_offset,
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (3, 77, 2, 0),
            "{setting}"
        );
        let shifted: Vec<_> = original_records
            .into_iter()
            .map(|(offset, ts, key)| (offset + 3, ts, key))
            .collect();
        assert_eq!(
            records_of(bytes),
            shifted,
            "{setting}: the same records at the same offsets"
        );
        // A retry of the same batch is still known by its sequence: answered with the first offsets.
        match log.append_as_leader(&mut sent_batch.clone(), 0).unwrap() {
            LeaderAppend::Duplicate { batch, .. } => assert_eq!(batch.base_offset, 3),
            other => panic!("{setting}: expected a duplicate, got {other:?}"),
        }
    }
}

#[test]
fn recompression_that_does_not_fit_max_message_bytes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // 200 records of repeated text: small in zstd, far larger uncompressed.
    let sent = keyed(200, now_ms(), Compression::Zstd);
    let limit = (sent.len() * 2).to_string();
    let mut log = open(
        dir.path(),
        config(&[("compression.type", "uncompressed"), ("max.message.bytes", &limit)]),
    );
    let e = log.append_as_leader(&mut sent.clone(), 0).unwrap_err();
    assert!(matches!(e, AppendError::TooLarge { .. }), "{e}");
    assert_eq!(log.log_end_offset(), 0, "nothing appended");
}

#[test]
fn log_append_time_stamps_each_batch_and_is_returned_to_the_producer() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[("message.timestamp.type", "LogAppendTime")]));
    let before = now_ms();
    // An ancient create time, which LogAppendTime replaces.
    let mut first = idempotent(
        &[
            Record {
                key: Some(b"a"),
                value: Some(b"1"),
                timestamp: 1000,
                headers: &[],
            },
            Record {
                key: Some(b"b"),
                value: Some(b"2"),
                timestamp: 1001,
                headers: &[],
            },
        ],
        5,
        0,
        0,
    );
    let sent = first.clone();
    let info = appended(log.append_as_leader(&mut first, 0));
    let after = now_ms();
    let stamped = info.log_append_time_ms.expect("the append time");
    assert!((before..=after).contains(&stamped), "{before} <= {stamped} <= {after}");
    assert_eq!(info.max_timestamp, stamped);
    // Also when the batch is recompressed on the way.
    let mut log_zstd = open(
        &dir.path().join("zstd"),
        config(&[
            ("message.timestamp.type", "LogAppendTime"),
            ("compression.type", "zstd"),
        ]),
    );
    let zstd_time = appended(log_zstd.append_as_leader(&mut keyed(5, 1000, Compression::Gzip), 0))
        .log_append_time_ms
        .unwrap();
    for (log, time) in [(&log, stamped), (&log_zstd, zstd_time)] {
        let (header, bytes) = &stored(log)[0];
        batch::validate(bytes).unwrap();
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, time);
        assert!(
            records_of(bytes).iter().all(|(_, ts, _)| *ts == time),
            "every record reads the append time"
        );
    }
    // The time index follows the append time: a search by time finds the batch.
    assert_eq!(log.offset_for_timestamp(stamped).unwrap().map(|t| t.offset), Some(0));
    // The producer's retry is answered with the time the batch got the first time.
    match log.append_as_leader(&mut sent.clone(), 0).unwrap() {
        LeaderAppend::Duplicate { log_append_time_ms, .. } => assert_eq!(log_append_time_ms, Some(stamped)),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    // CreateTime topics answer no append time.
    let mut create_time = open(&dir.path().join("create"), config(&[]));
    let info = appended(create_time.append_as_leader(&mut keyed(1, now_ms(), Compression::None), 0));
    assert_eq!(info.log_append_time_ms, None);
}

fn rejection(e: AppendError) -> (RejectionKind, Vec<usize>) {
    match e {
        AppendError::InvalidBatch {
            source: BatchError::RecordsRejected { kind, errors, .. },
            ..
        } => (kind, errors.into_iter().map(|e| e.index).collect()),
        other => panic!("expected rejected records, got {other}"),
    }
}

#[test]
fn create_times_outside_the_window_are_refused_and_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[]));
    // Kafka 4's defaults: any age is fine, at most an hour ahead.
    appended(log.append_as_leader(&mut keyed(2, 1000, Compression::None), 0));
    appended(log.append_as_leader(&mut keyed(2, now_ms() + HOUR_MS - 60_000, Compression::Lz4), 0));
    let e = log
        .append_as_leader(&mut keyed(3, now_ms() + 2 * HOUR_MS, Compression::Gzip), 0)
        .unwrap_err();
    assert_eq!(rejection(e), (RejectionKind::InvalidTimestamp, vec![0, 1, 2]));
    assert_eq!(log.log_end_offset(), 4);

    let mut config = log.config().clone();
    config.set("message.timestamp.before.max.ms", "60000").unwrap();
    log.set_config(config);
    let e = log
        .append_as_leader(&mut keyed(1, now_ms() - 120_000, Compression::None), 0)
        .unwrap_err();
    assert_eq!(rejection(e).0, RejectionKind::InvalidTimestamp);
    appended(log.append_as_leader(&mut keyed(1, now_ms(), Compression::None), 0));

    // LogAppendTime topics do not judge the producer's clock.
    let mut lat = open(&dir.path().join("lat"), config_lat());
    appended(lat.append_as_leader(&mut keyed(1, now_ms() + 10 * HOUR_MS, Compression::None), 0));
}

fn config_lat() -> LogConfig {
    config(&[
        ("message.timestamp.type", "LogAppendTime"),
        ("message.timestamp.after.max.ms", "0"),
    ])
}

#[test]
fn a_compacted_log_refuses_records_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[("cleanup.policy", "compact")]));
    let keyless = encode(
        &[
            Record {
                key: Some(b"k"),
                value: Some(b"v"),
                timestamp: now_ms(),
                headers: &[],
            },
            Record {
                key: None,
                value: Some(b"v"),
                timestamp: now_ms(),
                headers: &[],
            },
        ],
        Compression::Snappy,
    );
    let e = log.append_as_leader(&mut keyless.clone(), 0).unwrap_err();
    assert!(e.to_string().contains("record errors"), "{e}");
    assert_eq!(rejection(e), (RejectionKind::InvalidRecord, vec![1]));
    assert_eq!(log.log_end_offset(), 0, "nothing of the batch was appended");
    appended(log.append_as_leader(&mut keyed(2, now_ms(), Compression::None), 0));

    // The same batch is fine on a log that only deletes.
    let mut deleting = open(&dir.path().join("delete"), config(&[]));
    appended(deleting.append_as_leader(&mut keyless.clone(), 0));
}

/// Appends `n` records with keys `key-0..n` (each batch one key) at `timestamp`, then rolls and flushes so
/// the segment is closed and below the recovery point: what the cleaner may clean.
fn closed_segment(log: &mut Log, keys: std::ops::Range<usize>, timestamp: i64) {
    for k in keys {
        let key = format!("key-{k}");
        let mut one = encode(
            &[Record {
                key: Some(key.as_bytes()),
                value: Some(b"some value of a few bytes"),
                timestamp,
                headers: &[],
            }],
            Compression::None,
        );
        appended(log.append_as_leader(&mut one, 0));
    }
    log.roll().unwrap();
    log.flush().unwrap();
}

#[test]
fn the_cleaner_waits_for_the_dirty_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[("cleanup.policy", "compact")]));
    let now = now_ms();
    closed_segment(&mut log, 0..100, now);
    closed_segment(&mut log, 0..100, now);
    // All of it is dirty the first time: ratio 1.0 > 0.5.
    let plan = log.plan_compaction(now).expect("a first compaction");
    assert_eq!(plan.dirty_ratio(), 1.0);
    assert!(!plan.overdue());
    let report = log.install_compaction(plan.build().unwrap()).unwrap();
    assert!(report.segments_rewritten > 0);
    // A little new data against the cleaned log: not yet.
    closed_segment(&mut log, 0..10, now);
    assert!(
        log.plan_compaction(now).is_none(),
        "10 dirty records against 100 clean ones wait"
    );
    // More than the clean part: due.
    closed_segment(&mut log, 0..100, now);
    closed_segment(&mut log, 0..100, now);
    let plan = log.plan_compaction(now).expect("dirty past the ratio");
    assert!(plan.dirty_ratio() > 0.5, "{}", plan.dirty_ratio());

    // A lower ratio lets the small dirty part through; 1.0 never triggers by ratio.
    let mut config = log.config().clone();
    config.set("min.cleanable.dirty.ratio", "1.0").unwrap();
    log.set_config(config.clone());
    assert!(log.plan_compaction(now).is_none(), "a ratio can never exceed 1.0");
    config.set("min.cleanable.dirty.ratio", "0.01").unwrap();
    log.set_config(config);
    assert!(log.plan_compaction(now).is_some());
}

#[test]
fn a_record_older_than_max_compaction_lag_makes_the_cleaner_run_whatever_the_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(
        dir.path(),
        config(&[
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "1.0"),
            ("max.compaction.lag.ms", "60000"),
        ]),
    );
    let now = now_ms();
    closed_segment(&mut log, 0..50, now - 1000);
    assert!(
        log.plan_compaction(now).is_none(),
        "young records: the ratio decides, and 1.0 never does"
    );
    // A minute and a second later the same records are overdue.
    let plan = log.plan_compaction(now + 61_000).expect("overdue");
    assert!(plan.overdue());
    log.install_compaction(plan.build().unwrap()).unwrap();
}

#[test]
fn records_younger_than_min_compaction_lag_are_not_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(
        dir.path(),
        config(&[
            ("cleanup.policy", "compact"),
            ("min.compaction.lag.ms", "3600000"),
            // So that only the lag holds compaction back (the young part is half the log at the end).
            ("min.cleanable.dirty.ratio", "0.1"),
        ]),
    );
    let now = now_ms();
    closed_segment(&mut log, 0..50, now - 2 * HOUR_MS);
    closed_segment(&mut log, 0..50, now - 2 * HOUR_MS);
    let young_base = log.log_end_offset();
    closed_segment(&mut log, 0..50, now - 60_000);
    let plan = log.plan_compaction(now).expect("the old segments are due");
    assert_eq!(
        plan.clean_below(),
        young_base,
        "the young segment and what follows wait"
    );
    log.install_compaction(plan.build().unwrap()).unwrap();
    let young: Vec<_> = stored(&log)
        .into_iter()
        .filter(|(h, _)| h.base_offset as u64 >= young_base)
        .collect();
    assert_eq!(young.len(), 50, "the young records are all still there");
    assert!(log.plan_compaction(now).is_none(), "nothing else is old enough");
    // An hour later the young segment may go too.
    assert!(log.plan_compaction(now + HOUR_MS).is_some());
}

#[test]
fn the_cleaner_rolls_an_idle_active_segment_past_max_compaction_lag_and_compacts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (manager, _) = LogManager::open(dir.path(), LogConfig::default(), ManagerConfig::default()).unwrap();
    let tp = TopicPartition::new("table", 0);
    let log = manager
        .get_or_create(
            &tp,
            config(&[
                ("cleanup.policy", "compact"),
                ("min.cleanable.dirty.ratio", "1.0"),
                ("max.compaction.lag.ms", "200"),
            ]),
        )
        .unwrap();
    {
        let mut log = log.lock().unwrap();
        for round in 0..3 {
            for k in 0..20 {
                let key = format!("key-{k}");
                let value = format!("round {round}");
                let mut one = encode(
                    &[Record {
                        key: Some(key.as_bytes()),
                        value: Some(value.as_bytes()),
                        timestamp: now_ms(),
                        headers: &[],
                    }],
                    Compression::None,
                );
                appended(log.append_as_leader(&mut one, 0));
            }
        }
    }
    // No more appends: the cleaner alone rolls the active segment once it is older than the lag, and
    // compacts it once the roll's fsync made it durable.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    loop {
        manager.clean();
        let records: usize = stored(&log.lock().unwrap())
            .iter()
            .map(|(h, _)| h.record_count as usize)
            .sum();
        if records == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "still {records} records");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(started.elapsed() >= Duration::from_millis(200), "not before the lag");
}

#[test]
fn deleted_segments_keep_their_space_for_file_delete_delay_ms() {
    let dir = tempfile::tempdir().unwrap();
    let (manager, _) = LogManager::open(dir.path(), LogConfig::default(), ManagerConfig::default()).unwrap();
    let fill = |name: &str, delay: &str| {
        let log = manager
            .get_or_create(
                &TopicPartition::new(name, 0),
                config(&[
                    ("retention.ms", "60000"),
                    ("segment.bytes", "100"),
                    ("file.delete.delay.ms", delay),
                ]),
            )
            .unwrap();
        let mut log = log.lock().unwrap();
        for _ in 0..3 {
            appended(log.append_as_leader(&mut keyed(1, now_ms() - HOUR_MS, Compression::None), 0));
        }
        appended(log.append_as_leader(&mut keyed(1, now_ms(), Compression::None), 0));
    };
    fill("at-once", "0");
    manager.upkeep().unwrap();
    assert_eq!(
        manager.deleted_files_pending(),
        0,
        "file.delete.delay.ms=0: freed in the same round"
    );

    fill("kept", "3600000");
    manager.upkeep().unwrap();
    assert_eq!(manager.deleted_files_pending(), 3, "an hour's delay: still held");

    fill("soon", "300");
    let deleted_at = Instant::now();
    manager.upkeep().unwrap();
    assert_eq!(manager.deleted_files_pending(), 6);
    let deadline = deleted_at + Duration::from_secs(30);
    while manager.deleted_files_pending() > 3 {
        assert!(Instant::now() < deadline, "never freed");
        std::thread::sleep(Duration::from_millis(20));
        manager.free_due_deleted_files();
    }
    assert!(
        deleted_at.elapsed() >= Duration::from_millis(300),
        "not before the delay"
    );
    assert_eq!(manager.deleted_files_pending(), 3, "the hour's are still held");
}
