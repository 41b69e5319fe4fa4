//! Compaction built outside the partition lock: appends go on while it runs, the result keeps the newest
//! record of every key, and a build the log outran is thrown away.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_storage::batch::build::{Record, batch};
use strata_storage::batch::{self, BatchHeader};
use strata_storage::{Log, LogConfig, LogManager, ManagerConfig, ReadLimits, TopicPartition};

fn compacted_config() -> LogConfig {
    let mut config = LogConfig::default();
    config.set("cleanup.policy", "compact").unwrap();
    config.set("segment.bytes", "65536").unwrap();
    config
}

/// Appends one record with `key`; returns its offset.
fn put(log: &mut Log, key: &str, round: usize) -> u64 {
    let value = format!("{key} in round {round}");
    let mut bytes = batch(&[Record {
        key: Some(key.as_bytes()),
        value: Some(value.as_bytes()),
        timestamp: 1_000,
        headers: &[],
    }]);
    log.append(&mut bytes, 0).unwrap().first_offset
}

/// Every record of the log: (offset, key).
fn all_records(log: &Log) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, ReadLimits::bytes(1 << 20)).unwrap();
        let mut rest = &read.records[..];
        while !rest.is_empty() {
            let header = BatchHeader::parse(rest).unwrap();
            let (one, tail) = rest.split_at(header.total_bytes());
            for record in batch::records(one).unwrap() {
                out.push((record.offset, record.key.unwrap()));
            }
            rest = tail;
        }
        offset = read.next_offset;
    }
    out
}

#[test]
fn compaction_runs_while_appends_continue_and_keeps_the_newest_record_of_each_key() {
    let dir = tempfile::tempdir().unwrap();
    let (manager, _) = LogManager::open(dir.path(), LogConfig::default(), ManagerConfig::default()).unwrap();
    let log = manager
        .get_or_create(&TopicPartition::new("table", 0), compacted_config())
        .unwrap();
    let mut newest: HashMap<Vec<u8>, u64> = HashMap::new();
    {
        let mut log = log.lock().unwrap();
        for round in 0..60 {
            for k in 0..100 {
                let key = format!("key-{k}");
                newest.insert(key.clone().into_bytes(), put(&mut log, &key, round));
            }
        }
        log.roll().unwrap();
        // Compaction cleans only segments below the recovery point: wait for the roll's fsync.
        log.flush().unwrap();
    }
    let compacted_below = *log.lock().unwrap().segment_base_offsets().last().unwrap();

    // Appends to the same log, to keys old and new, for as long as the upkeep round runs.
    let done = Arc::new(AtomicBool::new(false));
    let appender = {
        let (log, done) = (log.clone(), done.clone());
        std::thread::spawn(move || {
            let mut written = Vec::new();
            let mut round = 1000;
            while !done.load(Ordering::Relaxed) || written.len() < 50 {
                let key = format!("key-{}", round % 120);
                let offset = put(&mut log.lock().unwrap(), &key, round);
                written.push((key.into_bytes(), offset));
                round += 1;
            }
            written
        })
    };
    manager.maintain().unwrap();
    done.store(true, Ordering::Relaxed);
    let written = appender.join().unwrap();
    for (key, offset) in &written {
        newest.insert(key.clone(), *offset);
    }

    let log = log.lock().unwrap();
    let records = all_records(&log);
    let offsets: Vec<i64> = records.iter().map(|(o, _)| *o).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets still increase");
    let present: BTreeSet<i64> = offsets.iter().copied().collect();
    for (_, offset) in &written {
        assert!(
            present.contains(&(*offset as i64)),
            "an append made during compaction was lost"
        );
    }
    // The newest record of every key is in the log, and it is the last one with that key.
    let mut last: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut compacted_keys = BTreeSet::new();
    for (offset, key) in &records {
        if (*offset as u64) < compacted_below {
            assert!(
                compacted_keys.insert(key.clone()),
                "a key twice in the compacted segments"
            );
        }
        last.insert(key.clone(), *offset);
    }
    assert_eq!(
        compacted_keys.len(),
        100,
        "the compacted segments keep one record per key"
    );
    for (key, offset) in &newest {
        assert_eq!(
            last.get(key),
            Some(&(*offset as i64)),
            "{}",
            String::from_utf8_lossy(key)
        );
    }
    assert!(
        std::fs::read_dir(log.dir())
            .unwrap()
            .all(|e| e.unwrap().file_name() != ".cleaner"),
        "the cleaner's directory is removed"
    );
    drop(log);
    manager.close().unwrap();
}

#[test]
fn a_compaction_the_log_outran_is_abandoned_and_the_next_one_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (manager, _) = LogManager::open(dir.path(), LogConfig::default(), ManagerConfig::default()).unwrap();
    let shared = manager
        .get_or_create(&TopicPartition::new("table", 0), compacted_config())
        .unwrap();
    let mut log = shared.lock().unwrap();
    let mut offsets = Vec::new();
    for round in 0..40 {
        for k in 0..100 {
            offsets.push(put(&mut log, &format!("key-{k}"), round));
        }
    }
    log.roll().unwrap();
    log.flush().unwrap();
    let before = all_records(&log);

    let plan = log.plan_compaction(i64::MAX).unwrap();
    let built = plan.build().unwrap();
    // Truncation (a follower told to by its leader) lands between the build and the swap.
    let cut = offsets[offsets.len() - 10];
    log.truncate_to(cut).unwrap();
    let report = log.install_compaction(built).unwrap();
    assert!(report.abandoned && report.segments_rewritten == 0);
    let expected: Vec<_> = before.into_iter().filter(|(o, _)| (*o as u64) < cut).collect();
    assert_eq!(all_records(&log), expected, "nothing of the stale build went in");

    log.roll().unwrap();
    log.flush().unwrap();
    let report = log.compact(i64::MAX).unwrap();
    assert!(!report.abandoned && report.segments_rewritten > 0);
    assert_eq!(all_records(&log).len(), 100, "one record per key");
}

/// Kafka's `log.cleaner.dedupe.buffer.size`: the key map of one compaction has a bound. A log whose dirty
/// segments hold more keys is compacted a part at a time, each round mapping as many whole segments as fit;
/// the result is the same. A segment whose keys alone do not fit is not compacted (and nothing is lost).
#[test]
fn the_key_map_is_bounded_by_the_dedupe_buffer_and_compaction_goes_a_part_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = compacted_config();
    config.set("segment.bytes", "8192").unwrap();
    // About 100 keys of 6-7 bytes, each charged with its map entry's overhead: two segments' worth.
    config.dedupe_buffer_bytes = 100 * (7 + 48);
    // Every round compacts whatever is dirty: after the first partial round the dirty part is less than
    // the default ratio (half the log), which would make the next rounds wait, as Kafka's would.
    config.set("min.cleanable.dirty.ratio", "0").unwrap();
    let (manager, _) = LogManager::open(dir.path(), LogConfig::default(), ManagerConfig::default()).unwrap();
    let shared = manager.get_or_create(&TopicPartition::new("table", 0), config).unwrap();
    let mut log = shared.lock().unwrap();
    let mut newest = HashMap::new();
    for round in 0..2 {
        for k in 0..400 {
            let key = format!("key-{k}");
            newest.insert(key.clone().into_bytes(), put(&mut log, &key, round) as i64);
        }
    }
    log.roll().unwrap();
    log.flush().unwrap();
    assert!(log.segment_count() > 10, "{} segments", log.segment_count());

    // Each round maps the dirty segments from where the last one stopped (Kafka's first dirty offset); one
    // that maps only segments of distinct keys rewrites nothing but still moves on.
    let rewriting_rounds = (0..log.segment_count())
        .filter(|_| log.compact(i64::MAX).unwrap().segments_rewritten > 0)
        .count();
    assert!(
        rewriting_rounds > 1,
        "a bounded map needs several rounds, took {rewriting_rounds}"
    );
    let records = all_records(&log);
    let kept: HashMap<Vec<u8>, i64> = records.iter().map(|(o, k)| (k.clone(), *o)).collect();
    assert_eq!(records.len(), 400, "one record per key");
    assert_eq!(kept, newest, "each key's newest record");

    // A map too small for one segment's keys: compaction refuses, the log is untouched.
    let mut config = log.config().clone();
    config.dedupe_buffer_bytes = 10 * (7 + 48);
    log.set_config(config);
    for k in 0..400 {
        put(&mut log, &format!("key-{k}"), 2);
    }
    log.roll().unwrap();
    log.flush().unwrap();
    let before = all_records(&log);
    assert!(log.compact(i64::MAX).is_err());
    assert_eq!(all_records(&log), before);
}
