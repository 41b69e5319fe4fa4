//! The storage side of replication: a follower's append of batches fetched from its leader, and the
//! leader-epoch cache (`leader-epoch-checkpoint`) that both keep in step with their batches.

mod common;

use std::path::{Path, PathBuf};

use common::{now_ms, records};
use strata_storage::batch::build::{Record, assign_offsets, encode};
use strata_storage::batch::{BatchError, BatchHeader, Compression};
use strata_storage::epochs::{LEADER_EPOCH_CHECKPOINT, LeaderEpochCache};
use strata_storage::{
    AppendError, EpochEntry, Error, HANDLES_MAX_DEFAULT, HandleCache, Log, LogConfig, OpenState, ReadLimits,
    RecoveryReport, ReplicaAppendError,
};

/// A batch as a leader stored it: `n` records from `base_offset`, written in `epoch`.
fn stored(n: usize, base_offset: u64, epoch: i32) -> Vec<u8> {
    let mut bytes = records(n, base_offset as i64 * 10);
    assign_offsets(&mut bytes, base_offset as i64, epoch);
    bytes
}

/// Kafka's defaults, except `segment.ms`: the timestamps here are near the epoch.
fn config(settings: &[(&str, &str)]) -> LogConfig {
    let mut config = LogConfig::default();
    config.set("segment.ms", &i64::MAX.to_string()).unwrap();
    config.set("retention.ms", "-1").unwrap();
    for (key, value) in settings {
        config.set(key, value).unwrap();
    }
    config
}

fn open_with(dir: &Path, config: LogConfig, state: OpenState) -> (Log, RecoveryReport) {
    Log::open(dir, config, HandleCache::new(HANDLES_MAX_DEFAULT), state).unwrap()
}

fn open(dir: &Path, config: LogConfig) -> Log {
    open_with(dir, config, OpenState::default()).0
}

/// Closes `log` and reopens it as after a clean shutdown.
fn reopen_clean(log: Log, dir: &Path, config: LogConfig) -> (Log, RecoveryReport) {
    let mut log = log;
    let (recovery_point, log_start_offset) = log.close().unwrap();
    drop(log);
    let state = OpenState {
        recovery_point,
        log_start_offset,
        clean_shutdown: true,
    };
    open_with(dir, config, state)
}

/// Drops `log` without closing it, as a crash would, and reopens it as after an unclean stop.
fn reopen_after_crash(log: Log, dir: &Path, config: LogConfig) -> (Log, RecoveryReport) {
    let state = OpenState {
        recovery_point: log.recovery_point(),
        log_start_offset: log.log_start_offset(),
        clean_shutdown: false,
    };
    drop(log);
    open_with(dir, config, state)
}

/// Every byte of the log from its start to its end, as reads return it.
fn all_bytes(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, ReadLimits::bytes(1 << 20)).unwrap();
        if read.records.is_empty() {
            break;
        }
        out.extend_from_slice(&read.records);
        offset = read.next_offset;
    }
    out
}

/// The headers of every batch, in order.
fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let header = BatchHeader::parse(rest).unwrap();
        rest = &rest[header.total_bytes()..];
        out.push(header);
    }
    out
}

/// The epoch entries the batches of `log` imply: the first batch of each higher epoch, the first one moved
/// up to the log start offset.
fn epochs_of_batches(log: &Log) -> Vec<EpochEntry> {
    let mut out: Vec<EpochEntry> = Vec::new();
    for header in headers(&all_bytes(log)) {
        let epoch = header.partition_leader_epoch;
        if epoch >= 0 && out.last().is_none_or(|e| epoch > e.epoch) {
            let start = (header.base_offset as u64).max(log.log_start_offset());
            out.push(EpochEntry::new(epoch, start));
        }
    }
    out
}

fn entries(log: &Log) -> Vec<(i32, u64)> {
    log.epoch_entries().iter().map(|e| (e.epoch, e.start_offset)).collect()
}

fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join(LEADER_EPOCH_CHECKPOINT)
}

/// The entries in the checkpoint file.
fn checkpoint_entries(dir: &Path) -> Vec<(i32, u64)> {
    let cache = LeaderEpochCache::read(checkpoint_path(dir), strata_storage::disk::OsDisk::shared())
        .unwrap()
        .unwrap()
        .unwrap();
    cache.entries().iter().map(|e| (e.epoch, e.start_offset)).collect()
}

/// Copies the leader to the follower the way a replica fetcher does: fetch from the follower's log end
/// offset, append what came back, until the follower has everything.
fn catch_up(leader: &Log, follower: &mut Log, fetch_bytes: usize) -> usize {
    let mut fetches = 0;
    while follower.log_end_offset() < leader.log_end_offset() {
        let limits = ReadLimits {
            max_bytes: fetch_bytes,
            max_offset: None,
            min_one_batch: true,
        };
        let fetched = leader.read(follower.log_end_offset(), limits).unwrap();
        assert!(
            !fetched.records.is_empty(),
            "the leader had nothing at {}",
            follower.log_end_offset()
        );
        let info = follower.append_replicated(&fetched.records).unwrap();
        assert_eq!(info.log_end_offset, fetched.next_offset);
        assert_eq!(info.log_end_offset, follower.log_end_offset());
        fetches += 1;
    }
    fetches
}

/// A leader log of 60 batches over epochs 0, 1 and 4, with rolls by size.
fn leader_log(dir: &Path, config: LogConfig) -> Log {
    let mut leader = open(dir, config);
    for i in 0..60u64 {
        let epoch = match i {
            0..20 => 0,
            20..45 => 1,
            _ => 4,
        };
        leader
            .append(&mut records(1 + (i % 4) as usize, i as i64 * 100), epoch)
            .unwrap();
    }
    leader
}

// ---------------------------------------------------------------------------------------------------------
// The follower's append.

#[test]
fn a_follower_copies_its_leader_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [("segment.bytes", "1500"), ("index.interval.bytes", "200")];
    let leader = leader_log(&dir.path().join("leader"), config(&settings));
    let follower_dir = dir.path().join("follower");
    let mut follower = open(&follower_dir, config(&settings));
    let fetches = catch_up(&leader, &mut follower, 700);
    assert!(fetches > 5, "{fetches} fetches");

    assert_eq!(all_bytes(&follower), all_bytes(&leader));
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(follower.epoch_entries(), leader.epoch_entries());
    assert_eq!(entries(&leader), [(0, 0), (1, 50), (4, 111)]);
    assert!(follower.segment_count() > 3, "segments roll on a follower too");
    // Indexes and time indexes work alike: every offset and timestamp finds the same batch.
    let check = |follower: &Log| {
        for offset in 0..leader.log_end_offset() {
            let want = leader.read(offset, ReadLimits::bytes(1)).unwrap();
            assert_eq!(
                follower.read(offset, ReadLimits::bytes(1)).unwrap(),
                want,
                "offset {offset}"
            );
        }
        for timestamp in (0..6000).step_by(37) {
            assert_eq!(
                follower.offset_for_timestamp(timestamp).unwrap(),
                leader.offset_for_timestamp(timestamp).unwrap()
            );
        }
        for epoch in -1..6 {
            assert_eq!(follower.end_offset_for_epoch(epoch), leader.end_offset_for_epoch(epoch));
        }
    };
    check(&follower);
    // And so do the files it wrote.
    let (follower, report) = reopen_clean(follower, &follower_dir, config(&settings));
    assert!(!report.epoch_cache_rebuilt);
    check(&follower);
    let (follower, _) = reopen_after_crash(follower, &follower_dir, config(&settings));
    check(&follower);
}

#[test]
fn a_partial_batch_at_the_end_of_a_fetch_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let fetched = [stored(3, 0, 2), stored(2, 3, 2), stored(4, 5, 2)].concat();
    let whole_two = stored(3, 0, 2).len() + stored(2, 3, 2).len();
    let third = fetched.len() - whole_two;
    for cut in [1, 8, 11, 12, 13, 16, 17, 60, 61, 62, third - 1] {
        let sub = dir.path().join(format!("cut-{cut}"));
        let mut follower = open(&sub, config(&[]));
        let info = follower.append_replicated(&fetched[..whole_two + cut]).unwrap();
        assert_eq!(
            (info.batches, info.records, info.log_end_offset),
            (2, 5, 5),
            "cut {cut}"
        );
        assert_eq!(all_bytes(&follower), fetched[..whole_two], "cut {cut}");
        // The next fetch brings the batch whole.
        follower.append_replicated(&fetched[whole_two..]).unwrap();
        assert_eq!(all_bytes(&follower), fetched, "cut {cut}");
    }
    // A fetch of nothing but a partial batch appends nothing.
    let mut follower = open(&dir.path().join("partial-only"), config(&[]));
    let first = stored(3, 0, 2).len();
    for cut in [0, 5, 40, first - 1] {
        let err = follower.append_replicated(&fetched[..cut]).unwrap_err();
        assert!(matches!(err, ReplicaAppendError::Append(AppendError::Empty)), "{err}");
    }
    assert_eq!(follower.log_end_offset(), 0);
    assert_eq!(follower.size_bytes(), 0);
}

/// What a follower holds, to compare before and after a refused append.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    log_end_offset: u64,
    bytes: Vec<u8>,
    epochs: Vec<(i32, u64)>,
    checkpoint: Vec<(i32, u64)>,
}

fn snapshot(log: &Log) -> Snapshot {
    Snapshot {
        log_end_offset: log.log_end_offset(),
        bytes: all_bytes(log),
        epochs: entries(log),
        checkpoint: checkpoint_entries(log.dir()),
    }
}

#[test]
fn fetched_batches_that_do_not_continue_the_log_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut follower = open(dir.path(), config(&[]));
    follower
        .append_replicated(&[stored(2, 0, 1), stored(3, 2, 3)].concat())
        .unwrap();
    let before = snapshot(&follower);
    assert_eq!(before.log_end_offset, 5);
    assert_eq!(before.epochs, [(1, 0), (3, 2)]);
    let good = stored(2, 5, 3);
    let position = good.len();

    let mismatch = |bytes: Vec<u8>, follower: &mut Log| match follower.append_replicated(&bytes) {
        Err(ReplicaAppendError::OffsetMismatch {
            position,
            expected,
            base_offset,
        }) => (position, expected, base_offset),
        other => panic!("{other:?}"),
    };
    // The first batch must start at the log end offset: not after it (a hole), not before (an overlap).
    assert_eq!(mismatch(stored(2, 6, 3), &mut follower), (0, 5, 6));
    assert_eq!(mismatch(stored(2, 4, 3), &mut follower), (0, 5, 4));
    assert_eq!(mismatch(stored(2, 0, 3), &mut follower), (0, 5, 0));
    // Each next batch right after the previous one: a hole, a repeat, an overlap.
    assert_eq!(
        mismatch([good.clone(), stored(1, 8, 3)].concat(), &mut follower),
        (position, 7, 8)
    );
    assert_eq!(
        mismatch([good.clone(), good.clone()].concat(), &mut follower),
        (position, 7, 5)
    );
    assert_eq!(
        mismatch([good.clone(), stored(2, 6, 3)].concat(), &mut follower),
        (position, 7, 6)
    );
    let mut negative = stored(1, 0, 3);
    set_base_offset(&mut negative, -1);
    assert_eq!(mismatch(negative, &mut follower), (0, 5, -1));

    // Epochs never go backwards, against the log or within one fetch.
    let regression = |bytes: Vec<u8>, follower: &mut Log| match follower.append_replicated(&bytes) {
        Err(ReplicaAppendError::EpochRegression {
            position,
            epoch,
            latest_epoch,
        }) => (position, epoch, latest_epoch),
        other => panic!("{other:?}"),
    };
    assert_eq!(regression(stored(2, 5, 2), &mut follower), (0, 2, 3));
    assert_eq!(regression(stored(2, 5, -1), &mut follower), (0, -1, 3));
    let newer = stored(2, 5, 6);
    assert_eq!(
        regression([newer.clone(), stored(1, 7, 5)].concat(), &mut follower),
        (newer.len(), 5, 6)
    );

    // Corrupt batches after a good one, as on the leader's path.
    let invalid = |bytes: Vec<u8>, follower: &mut Log| match follower.append_replicated(&bytes) {
        Err(ReplicaAppendError::Append(AppendError::InvalidBatch { position, source })) => (position, source),
        other => panic!("{other:?}"),
    };
    let mut bad_crc = stored(2, 7, 3);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x10;
    let (at, source) = invalid([good.clone(), bad_crc].concat(), &mut follower);
    assert!(
        at == position && matches!(source, BatchError::CrcMismatch { .. }),
        "{source}"
    );
    let mut v1 = stored(2, 7, 3);
    v1[16] = 1;
    let (at, source) = invalid([good.clone(), v1].concat(), &mut follower);
    assert_eq!((at, source), (position, BatchError::UnsupportedMagic(1)));
    // A header that claims more records than its offset range allows, with a CRC to match.
    let mut lying = stored(2, 7, 3);
    lying[57..61].copy_from_slice(&3i32.to_be_bytes());
    let crc = crc32c::crc32c(&lying[21..]);
    lying[17..21].copy_from_slice(&crc.to_be_bytes());
    let (at, source) = invalid([good.clone(), lying].concat(), &mut follower);
    assert!(
        at == position && matches!(source, BatchError::InconsistentCount { .. }),
        "{source}"
    );
    // A length field shorter than a header is corruption, not a partial batch.
    let mut short = stored(2, 7, 3);
    short[8..12].copy_from_slice(&10i32.to_be_bytes());
    let (at, _) = invalid([good.clone(), short].concat(), &mut follower);
    assert_eq!(at, position);

    assert_eq!(snapshot(&follower), before, "nothing refused left a trace");
    // And the log still takes what does continue it.
    follower.append_replicated(&[good, stored(1, 7, 4)].concat()).unwrap();
    assert_eq!(entries(&follower), [(1, 0), (3, 2), (4, 7)]);
    assert_eq!(checkpoint_entries(dir.path()), entries(&follower));
}

/// Sets the base offset field of a batch, leaving its epoch.
fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    let epoch = BatchHeader::parse(batch).unwrap().partition_leader_epoch;
    assign_offsets(batch, base_offset, epoch);
}

#[test]
fn a_compacted_leader_replicates_with_its_holes() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let compact = [("segment.bytes", "400"), ("cleanup.policy", "compact")];
    let mut leader = open(&dir.path().join("leader"), config(&compact));
    let keyed = |entries: &[(&str, &str)]| {
        let recs: Vec<Record<'_>> = entries
            .iter()
            .map(|(k, v)| Record {
                key: Some(k.as_bytes()),
                value: Some(v.as_bytes()),
                timestamp: now,
                ..Default::default()
            })
            .collect();
        encode(&recs, Compression::None)
    };
    for round in 0..10 {
        let value = format!("v{round:02}");
        leader.append(&mut keyed(&[("a", &value)]), round / 4).unwrap();
        // A batch that loses "a" but keeps "b{round}": fewer records than offsets after compaction.
        leader
            .append(&mut keyed(&[(&format!("b{round}"), &value), ("a", &value)]), round / 4)
            .unwrap();
    }
    leader.roll().unwrap();
    leader.append(&mut keyed(&[("c", "tail")]), 3).unwrap();
    assert!(leader.compact(now).unwrap().segments_rewritten > 0);
    let bytes = all_bytes(&leader);
    let stored = headers(&bytes);
    assert!(
        stored.windows(2).any(|w| w[1].base_offset > w[0].last_offset() + 1),
        "compaction left holes"
    );
    assert!(
        stored.iter().any(|h| h.record_count < h.last_offset_delta + 1),
        "and short batches"
    );

    let mut follower = open(&dir.path().join("follower"), config(&compact));
    catch_up(&leader, &mut follower, 300);
    assert_eq!(all_bytes(&follower), bytes);
    // An epoch starts at its first batch that survived compaction, which may be later than on the leader
    // (as in Kafka): no offset in between exists on either.
    assert_eq!(follower.epoch_entries(), epochs_of_batches(&follower));
    assert_eq!(follower.latest_epoch(), Some(3));

    // A log that is never compacted has no holes: there a hole means a fetch from the wrong offset.
    let mut strict = open(&dir.path().join("strict"), config(&[]));
    let fetched = leader.read(0, ReadLimits::bytes(1 << 20)).unwrap();
    let err = strict.append_replicated(&fetched.records).unwrap_err();
    assert!(matches!(err, ReplicaAppendError::OffsetMismatch { .. }), "{err}");
    assert_eq!(strict.log_end_offset(), 0);
}

#[test]
fn max_message_bytes_applies_to_producers_not_to_fetched_batches() {
    let dir = tempfile::tempdir().unwrap();
    // The leader took the batch when the limit was higher; the follower must still take it.
    let mut follower = open(dir.path(), config(&[("max.message.bytes", "100")]));
    let big = stored(10, 0, 0);
    assert!(big.len() > 100);
    let err = follower.append(&mut big.clone(), 0).unwrap_err();
    assert!(matches!(err, AppendError::TooLarge { .. }), "{err}");
    follower.append_replicated(&big).unwrap();
    assert_eq!(all_bytes(&follower), big);
}

#[test]
fn rolls_and_the_flush_policy_apply_to_fetched_batches() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [("flush.messages", "5"), ("segment.bytes", "600")];
    let mut follower = open(dir.path(), config(&settings));
    let mut next = 0;
    let mut recovery_points = Vec::new();
    for _ in 0..12 {
        follower.append_replicated(&stored(2, next, 1)).unwrap();
        next += 2;
        recovery_points.push(follower.recovery_point());
    }
    // The third append passes five unflushed records and flushes.
    assert_eq!(recovery_points[..3], [0, 0, 6]);
    assert!(follower.segment_count() >= 3, "{} segments", follower.segment_count());
    follower.flush().unwrap();
    assert_eq!(follower.recovery_point(), 24);
}

#[test]
fn a_follower_restarts_its_log_where_the_leader_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut follower = open(dir.path(), config(&[]));
    follower.append_replicated(&stored(3, 0, 1)).unwrap();
    // The leader deleted everything below 1000: the follower restarts there, empty.
    follower.truncate_fully_and_start_at(1000).unwrap();
    assert_eq!((follower.log_start_offset(), follower.log_end_offset()), (1000, 1000));
    assert_eq!(entries(&follower), []);
    assert_eq!(checkpoint_entries(dir.path()), []);
    // The leader's log start fell inside a batch (DeleteRecords): its first fetched batch starts below the
    // follower's log end. The follower restarts at the batch, as Kafka's does.
    let straddling = stored(10, 995, 2);
    let err = follower.append_replicated(&straddling).unwrap_err();
    assert!(
        matches!(
            err,
            ReplicaAppendError::OffsetMismatch {
                expected: 1000,
                base_offset: 995,
                ..
            }
        ),
        "{err}"
    );
    follower.truncate_fully_and_start_at(995).unwrap();
    follower.append_replicated(&straddling).unwrap();
    assert_eq!(entries(&follower), [(2, 995)]);
    let (follower, _) = reopen_clean(follower, dir.path(), config(&[]));
    assert_eq!((follower.log_start_offset(), follower.log_end_offset()), (995, 1005));
    assert_eq!(entries(&follower), [(2, 995)]);
}

#[test]
fn batches_without_an_epoch_record_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut follower = open(dir.path(), config(&[]));
    follower.append_replicated(&stored(2, 0, -1)).unwrap();
    assert_eq!(follower.latest_epoch(), None);
    assert_eq!(follower.end_offset_for_epoch(0), None);
    follower.append_replicated(&stored(2, 2, 0)).unwrap();
    assert_eq!(entries(&follower), [(0, 2)]);
    let (follower, report) = reopen_after_crash(follower, dir.path(), config(&[]));
    assert!(!report.epoch_cache_rebuilt);
    assert_eq!(entries(&follower), [(0, 2)]);
}

// ---------------------------------------------------------------------------------------------------------
// The leader-epoch cache.

#[test]
fn the_leader_records_each_new_epoch_and_refuses_a_stale_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[]));
    assert_eq!(log.latest_epoch(), None);
    assert!(
        !checkpoint_path(dir.path()).exists(),
        "nothing to write before the first epoch"
    );
    log.append(&mut records(2, 0), 0).unwrap();
    log.append(&mut records(3, 0), 0).unwrap();
    log.append(&mut records(1, 0), 2).unwrap();
    log.append(&mut [records(1, 0), records(1, 0)].concat(), 2).unwrap();
    log.append(&mut records(4, 0), 5).unwrap();
    assert_eq!(entries(&log), [(0, 0), (2, 5), (5, 8)]);
    assert_eq!(checkpoint_entries(dir.path()), entries(&log));
    assert_eq!(log.latest_epoch(), Some(5));

    let err = log.append(&mut records(1, 0), 4).unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::Storage(Error::StaleLeaderEpoch {
                epoch: 4,
                latest_epoch: 5,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(entries(&log), [(0, 0), (2, 5), (5, 8)]);
    // The stamped epochs are the ones recorded.
    assert_eq!(epochs_of_batches(&log), log.epoch_entries());
}

#[test]
fn end_offsets_for_epochs_at_every_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[("segment.bytes", "700")]));
    for (n, epoch) in [(5, 1), (5, 1), (10, 3), (5, 3), (5, 4)] {
        log.append(&mut records(n, 0), epoch).unwrap();
    }
    assert_eq!(entries(&log), [(1, 0), (3, 10), (4, 25)]);
    let answers = |log: &Log| (-2..=6).map(|e| log.end_offset_for_epoch(e)).collect::<Vec<_>>();
    assert_eq!(
        answers(&log),
        [
            None,          // -2
            None,          // -1: UNDEFINED_EPOCH
            Some((0, 0)),  // below the first epoch: where the history begins
            Some((1, 10)), // ends where epoch 3 starts
            Some((1, 10)), // epoch 2 never led: the one below it
            Some((3, 25)), // ends where epoch 4 starts
            Some((4, 30)), // the latest ends at the log end
            None,          // above the latest: UNDEFINED
            None,
        ]
    );
    // DeleteRecords into epoch 3: epoch 1 is gone, epoch 3 now starts at the log start.
    log.delete_records_before(12).unwrap();
    assert_eq!(entries(&log), [(3, 12), (4, 25)]);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 12)));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 25)));
    // Truncation to the start of epoch 4 removes it: epoch 3 is the latest again and ends at the log end.
    assert_eq!(log.truncate_to(25).unwrap(), 25);
    assert_eq!(entries(&log), [(3, 12)]);
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 25)));
    assert_eq!(log.end_offset_for_epoch(4), None);
    assert_eq!(checkpoint_entries(dir.path()), entries(&log));
}

#[test]
fn truncation_drops_the_epochs_at_or_past_the_new_end() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [("segment.bytes", "500")];
    let mut log = open(dir.path(), config(&settings));
    for (n, epoch) in [(3, 0), (3, 0), (3, 2), (3, 2), (3, 3), (3, 7)] {
        log.append(&mut records(n, 0), epoch).unwrap();
    }
    assert_eq!(entries(&log), [(0, 0), (2, 6), (3, 12), (7, 15)]);
    // Inside the first epoch-7 batch: it goes whole, and epoch 7 with it.
    assert_eq!(log.truncate_to(16).unwrap(), 15);
    assert_eq!(entries(&log), [(0, 0), (2, 6), (3, 12)]);
    // Past the end: nothing changes.
    assert_eq!(log.truncate_to(100).unwrap(), 15);
    assert_eq!(entries(&log), [(0, 0), (2, 6), (3, 12)]);
    // Inside epoch 2, across a segment boundary.
    assert_eq!(log.truncate_to(10).unwrap(), 9);
    assert_eq!(entries(&log), [(0, 0), (2, 6)]);
    assert_eq!(checkpoint_entries(dir.path()), entries(&log));
    let (mut log, _) = reopen_clean(log, dir.path(), config(&settings));
    assert_eq!(entries(&log), [(0, 0), (2, 6)]);
    // A new leader's epoch continues from the new end.
    log.append(&mut records(2, 0), 8).unwrap();
    assert_eq!(entries(&log), [(0, 0), (2, 6), (8, 9)]);
    assert_eq!(epochs_of_batches(&log), log.epoch_entries());
    // The whole log: the cache is cleared.
    log.delete_records_before(4).unwrap();
    assert_eq!(log.truncate_to(2).unwrap(), 2);
    assert_eq!(entries(&log), []);
    assert_eq!(checkpoint_entries(dir.path()), []);
    log.append(&mut records(1, 0), 9).unwrap();
    assert_eq!(entries(&log), [(9, 2)]);
}

#[test]
fn moving_the_log_start_moves_the_first_epoch_up() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [("segment.bytes", "500")];
    let mut log = open(dir.path(), config(&settings));
    for (n, epoch) in [(3, 1), (3, 1), (3, 1), (3, 2), (3, 2), (3, 2), (3, 4)] {
        log.append(&mut records(n, 0), epoch).unwrap();
    }
    assert_eq!(entries(&log), [(1, 0), (2, 9), (4, 18)]);
    // DeleteRecords inside epoch 1.
    log.delete_records_before(4).unwrap();
    assert_eq!(entries(&log), [(1, 4), (2, 9), (4, 18)]);
    // Retention by size deletes whole segments from the front.
    let mut retained = config(&settings);
    retained.set("retention.bytes", "400").unwrap();
    log.set_config(retained);
    let report = log.enforce_retention(now_ms()).unwrap();
    assert!(report.segments_deleted > 0);
    let start = log.log_start_offset();
    assert!(start > 9, "log start {start}");
    assert_eq!(entries(&log), [(2, start), (4, 18)]);
    assert_eq!(epochs_of_batches(&log), log.epoch_entries());
    assert_eq!(checkpoint_entries(dir.path()), entries(&log));
    // Everything: the latest epoch stays, at the log end, until the next append.
    let end = log.log_end_offset();
    log.delete_records_before(end).unwrap();
    assert_eq!(entries(&log), [(4, end)]);
    assert_eq!(log.end_offset_for_epoch(4), Some((4, end)));
    assert_eq!(log.end_offset_for_epoch(2), Some((2, end)));
    log.append(&mut records(1, 0), 4).unwrap();
    assert_eq!(entries(&log), [(4, end)]);
    log.append(&mut records(1, 0), 6).unwrap();
    assert_eq!(entries(&log), [(4, end), (6, end + 1)]);
    let (log, _) = reopen_clean(log, dir.path(), config(&settings));
    assert_eq!(entries(&log), [(4, end), (6, end + 1)]);
}

#[test]
fn the_checkpoint_survives_a_clean_reopen_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [("segment.bytes", "700")];
    let mut log = open(dir.path(), config(&settings));
    for epoch in [0, 0, 1, 3, 3, 3, 6] {
        log.append(&mut records(4, 0), epoch).unwrap();
    }
    let want = entries(&log);
    assert_eq!(want, [(0, 0), (1, 8), (3, 12), (6, 24)]);
    let (mut log, report) = reopen_clean(log, dir.path(), config(&settings));
    assert!(!report.epoch_cache_rebuilt);
    assert_eq!(entries(&log), want);
    // Appends without a flush, then a crash: whatever recovery keeps, the cache matches it.
    log.append(&mut records(2, 0), 7).unwrap();
    log.append(&mut records(2, 0), 7).unwrap();
    let (log, report) = reopen_after_crash(log, dir.path(), config(&settings));
    assert!(!report.epoch_cache_rebuilt);
    assert_eq!(entries(&log), [(0, 0), (1, 8), (3, 12), (6, 24), (7, 28)]);
    assert_eq!(epochs_of_batches(&log), log.epoch_entries());
}

#[test]
fn a_corrupt_or_missing_checkpoint_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [("segment.bytes", "700")];
    let mut log = open(dir.path(), config(&settings));
    for epoch in [1, 1, 2, 2, 2, 5, 8, 8] {
        log.append(&mut records(3, 0), epoch).unwrap();
    }
    log.delete_records_before(4).unwrap();
    let want = entries(&log);
    assert_eq!(want, [(1, 4), (2, 6), (5, 15), (8, 18)]);
    let (mut log, _) = reopen_clean(log, dir.path(), config(&settings));
    let path = checkpoint_path(dir.path());

    // A flipped byte, after a clean stop and after a crash.
    for clean in [true, false] {
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[6] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let (reopened, report) = if clean {
            reopen_clean(log, dir.path(), config(&settings))
        } else {
            reopen_after_crash(log, dir.path(), config(&settings))
        };
        log = reopened;
        assert!(report.epoch_cache_rebuilt, "clean = {clean}");
        assert_eq!(entries(&log), want, "clean = {clean}");
        assert_eq!(checkpoint_entries(dir.path()), want, "the rebuilt cache is written");
    }
    // Missing (a log from before the checkpoint existed).
    std::fs::remove_file(&path).unwrap();
    let (log, report) = reopen_clean(log, dir.path(), config(&settings));
    assert!(report.epoch_cache_rebuilt);
    assert_eq!(entries(&log), want);
    let (log, report) = reopen_clean(log, dir.path(), config(&settings));
    assert!(!report.epoch_cache_rebuilt, "read, not rebuilt, the next time");
    assert_eq!(entries(&log), want);

    // Garbage that passes for nothing at all.
    std::fs::write(&path, b"\x00\xff garbage").unwrap();
    let (log, report) = reopen_after_crash(log, dir.path(), config(&settings));
    assert!(report.epoch_cache_rebuilt);
    assert_eq!(entries(&log), want);
}

#[test]
fn a_checkpoint_behind_the_log_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[]));
    log.append(&mut records(2, 0), 1).unwrap();
    let path = checkpoint_path(dir.path());
    let old = std::fs::read(&path).unwrap();
    log.append(&mut records(2, 0), 3).unwrap();
    // A valid checkpoint that misses epoch 3 (as a restored backup might): its latest epoch is not the last
    // batch's.
    std::fs::write(&path, &old).unwrap();
    let (log, report) = reopen_clean(log, dir.path(), config(&[]));
    assert!(report.epoch_cache_rebuilt);
    assert_eq!(entries(&log), [(1, 0), (3, 2)]);
}

#[test]
fn a_torn_batch_takes_its_new_epoch_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[]));
    log.append(&mut records(2, 0), 1).unwrap();
    log.append(&mut records(2, 0), 1).unwrap();
    log.append(&mut records(3, 0), 2).unwrap();
    assert_eq!(entries(&log), [(1, 0), (2, 4)]);
    let state = OpenState {
        recovery_point: 0,
        log_start_offset: 0,
        clean_shutdown: false,
    };
    drop(log);
    // The write of the epoch-2 batch was interrupted: its checkpoint entry was written first, the batch not
    // whole.
    let segment = dir.path().join("00000000000000000000.log");
    let len = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (mut log, report) = open_with(dir.path(), config(&[]), state);
    assert!(report.bytes_truncated > 0);
    assert!(!report.epoch_cache_rebuilt, "truncated, not rebuilt");
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(entries(&log), [(1, 0)]);
    assert_eq!(checkpoint_entries(dir.path()), [(1, 0)]);
    assert_eq!(log.end_offset_for_epoch(2), None);
    log.append(&mut records(1, 0), 2).unwrap();
    assert_eq!(entries(&log), [(1, 0), (2, 4)]);
}
