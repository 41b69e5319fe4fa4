//! Behaviour of a partition log through its public API: what a broker (and so a Kafka client) would see.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{now_ms, records};
use strata_storage::batch::build::{Record, batch, encode};
use strata_storage::batch::{self, BatchHeader, Compression};
use strata_storage::{
    AppendError, HANDLES_MAX_DEFAULT, HandleCache, Log, LogConfig, OpenState, ReadError, ReadLimits, TimestampOffset,
};

const HOUR_MS: i64 = 60 * 60 * 1000;

/// Kafka's defaults, except `segment.ms`: most tests use timestamps near the epoch, which the default
/// (7 days, counted from the first batch's timestamp) would take as ancient and roll on every append.
fn config(settings: &[(&str, &str)]) -> LogConfig {
    let mut config = LogConfig::default();
    config.set("segment.ms", &i64::MAX.to_string()).unwrap();
    for (key, value) in settings {
        config.set(key, value).unwrap();
    }
    config
}

fn open_with(dir: &Path, config: LogConfig, state: OpenState) -> Log {
    Log::open(dir, config, HandleCache::new(HANDLES_MAX_DEFAULT), state)
        .unwrap()
        .0
}

fn open(dir: &Path, config: LogConfig) -> Log {
    open_with(dir, config, OpenState::default())
}

/// Every batch from the log start to the log end, split, with each batch checked.
fn all_batches(log: &Log) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, ReadLimits::bytes(64 * 1024)).unwrap();
        assert!(
            !read.records.is_empty(),
            "no data at {offset} below the log end {}",
            log.log_end_offset()
        );
        let mut rest = &read.records[..];
        while !rest.is_empty() {
            let header = BatchHeader::parse(rest).unwrap();
            let (one, tail) = rest.split_at(header.total_bytes());
            batch::validate(one).unwrap();
            out.push((header, one.to_vec()));
            rest = tail;
        }
        offset = read.next_offset;
    }
    out
}

fn assert_contiguous(log: &Log) {
    let batches = all_batches(log);
    let mut expected = batches
        .first()
        .map_or(log.log_start_offset(), |(h, _)| h.base_offset as u64);
    for (header, _) in &batches {
        assert_eq!(header.base_offset as u64, expected, "gap or overlap");
        expected = header.last_offset() as u64 + 1;
    }
    assert_eq!(expected, log.log_end_offset());
}

/// The stored batch equals what was sent apart from the two fields the log assigns.
fn same_batch(stored: &[u8], sent: &[u8]) -> bool {
    stored.len() == sent.len() && stored[8..12] == sent[8..12] && stored[16..] == sent[16..]
}

#[test]
fn appends_get_contiguous_offsets_and_read_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[]));
    let sent: Vec<Vec<u8>> = (0..5).map(|i| records(i + 1, 1000 * i as i64)).collect();
    let mut next = 0;
    for (i, batch) in sent.iter().enumerate() {
        let info = log.append(&mut batch.clone(), 7).unwrap();
        assert_eq!(info.first_offset, next);
        assert_eq!(info.last_offset, next + i as u64);
        assert_eq!(info.log_end_offset, info.last_offset + 1);
        assert_eq!(info.max_timestamp, 1000 * i as i64 + i as i64);
        next = info.log_end_offset;
    }
    assert_eq!(log.log_end_offset(), 15);
    let stored = all_batches(&log);
    for ((header, bytes), sent) in stored.iter().zip(&sent) {
        assert!(same_batch(bytes, sent));
        assert_eq!(header.partition_leader_epoch, 7);
    }
}

#[test]
fn several_batches_in_one_append_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[]));
    let mut two = [records(2, 0), records(3, 10)].concat();
    let info = log.append(&mut two, 0).unwrap();
    assert_eq!(
        (info.first_offset, info.last_offset, info.batches, info.records),
        (0, 4, 2, 5)
    );

    // A good batch followed by one with a broken CRC: neither is appended.
    let mut bad = records(3, 20);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let mut mixed = [records(2, 30), bad].concat();
    let err = log.append(&mut mixed, 0).unwrap_err();
    assert!(
        matches!(err, AppendError::InvalidBatch { position, source: batch::BatchError::CrcMismatch { .. } } if position > 0),
        "{err}"
    );
    assert_eq!(log.log_end_offset(), 5);
    assert_contiguous(&log);
}

#[test]
fn invalid_input_is_refused_with_a_typed_error_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[("max.message.bytes", "1000")]));
    log.append(&mut records(1, 0), 0).unwrap();
    let size = log.size_bytes();

    assert!(matches!(log.append(&mut [], 0), Err(AppendError::Empty)));
    assert!(matches!(
        log.append(&mut records(100, 0), 0),
        Err(AppendError::TooLarge { max: 1000, .. })
    ));
    let mut truncated = records(3, 0);
    truncated.truncate(truncated.len() - 5);
    assert!(matches!(
        log.append(&mut truncated, 0),
        Err(AppendError::InvalidBatch { .. })
    ));
    let mut garbage = vec![0xabu8; 200];
    assert!(matches!(
        log.append(&mut garbage, 0),
        Err(AppendError::InvalidBatch { .. })
    ));

    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(log.size_bytes(), size);
    log.append(&mut records(1, 0), 0).unwrap();
    assert_contiguous(&log);
}

#[test]
fn reads_honour_offsets_inside_batches_byte_limits_and_the_upper_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[]));
    for i in 0..10 {
        log.append(&mut records(10, i * 100), 0).unwrap(); // offsets 10i..10i+9
    }
    let batch_bytes = records(10, 0).len();

    // An offset inside a batch returns the batch holding it.
    let read = log.read(37, ReadLimits::bytes(1)).unwrap();
    let header = BatchHeader::parse(&read.records).unwrap();
    assert_eq!((header.base_offset, read.next_offset), (30, 40));
    assert_eq!(
        read.records.len(),
        batch_bytes,
        "min_one_batch returns one whole batch past max_bytes"
    );

    // Without min_one_batch, a limit below one batch returns nothing.
    let limits = ReadLimits {
        max_bytes: batch_bytes - 1,
        max_offset: None,
        min_one_batch: false,
    };
    assert!(log.read(37, limits).unwrap().records.is_empty());

    // Byte limits return whole batches only.
    let read = log
        .read(0, ReadLimits::bytes(batch_bytes * 3 + batch_bytes / 2))
        .unwrap();
    assert_eq!(read.records.len(), batch_bytes * 3);
    assert_eq!(read.next_offset, 30);

    // The upper bound (a high watermark) stops before batches that reach it.
    let limits = ReadLimits {
        max_bytes: 1 << 20,
        max_offset: Some(45),
        min_one_batch: true,
    };
    let read = log.read(0, limits).unwrap();
    assert_eq!(read.next_offset, 40);
    let limits = ReadLimits {
        max_bytes: 1 << 20,
        max_offset: Some(40),
        min_one_batch: true,
    };
    assert!(log.read(40, limits).unwrap().records.is_empty());

    // The log end reads nothing; beyond it is out of range.
    let read = log.read(100, ReadLimits::bytes(1 << 20)).unwrap();
    assert!(read.records.is_empty());
    assert_eq!((read.log_start_offset, read.log_end_offset), (0, 100));
    assert!(matches!(
        log.read(101, ReadLimits::bytes(1)),
        Err(ReadError::OffsetOutOfRange { offset: 101, .. })
    ));

    let location = log.locate(37).unwrap().unwrap();
    assert_eq!(
        (location.base_offset, location.last_offset, location.size_bytes),
        (30, 39, batch_bytes)
    );
    assert_eq!(log.locate(100).unwrap(), None);
}

#[test]
fn segments_roll_at_the_size_limit_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let batch_bytes = records(10, 0).len() as u64;
    let segment_bytes = (batch_bytes * 3).to_string();
    let mut log = open(
        dir.path(),
        config(&[("segment.bytes", &segment_bytes), ("index.interval.bytes", "1")]),
    );
    for i in 0..10 {
        log.append(&mut records(10, i), 0).unwrap();
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 30, 60, 90]);
    // A roll fsyncs the rolled segment on a thread of its own; the recovery point follows when it is done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while log.recovery_point() < 90 {
        assert!(
            std::time::Instant::now() < deadline,
            "the rolled segments' fsync never moved the recovery point"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
        log.reap_rolled_syncs();
    }
    for name in [
        "00000000000000000030.log",
        "00000000000000000030.index",
        "00000000000000000030.timeindex",
    ] {
        assert!(dir.path().join(name).exists(), "{name}");
    }
    // Every offset is readable, through each segment's index.
    for offset in 0..100 {
        let read = log.read(offset, ReadLimits::bytes(1)).unwrap();
        let header = BatchHeader::parse(&read.records).unwrap();
        assert_eq!(header.base_offset as u64, offset / 10 * 10);
    }
    let read = log.read(25, ReadLimits::bytes(1 << 20)).unwrap();
    assert_eq!(read.next_offset, 30, "one read does not cross a segment");
    assert_contiguous(&log);
}

#[test]
fn segments_roll_by_age_and_when_an_index_fills() {
    let dir = tempfile::tempdir().unwrap();
    let segment_ms = 50;
    let mut log = open(dir.path(), config(&[("segment.ms", &segment_ms.to_string())]));
    // A producer's ancient timestamp alone does not roll: otherwise each of its batches would start a
    // segment (files, maps and descriptors without end, from one client).
    for _ in 0..100 {
        log.append(&mut records(1, now_ms() - 2 * HOUR_MS), 0).unwrap();
    }
    assert_eq!(log.segment_count(), 1, "a segment created moments ago is not old");
    // Once the segment is older than segment.ms by the clock as well, the next append rolls it.
    let created = std::time::Instant::now();
    let deadline = created + std::time::Duration::from_secs(10);
    while log.segment_count() == 1 {
        assert!(std::time::Instant::now() < deadline, "the segment never rolled");
        std::thread::sleep(std::time::Duration::from_millis(segment_ms));
        log.append(&mut records(1, now_ms()), 0).unwrap();
    }
    assert!(created.elapsed().as_millis() >= u128::from(segment_ms));
    assert_eq!(log.segment_base_offsets()[0], 0);
    let rolled = log.segment_count();
    log.append(&mut records(1, now_ms()), 0).unwrap();
    assert_eq!(log.segment_count(), rolled, "a young segment with young batches stays");

    let dir = tempfile::tempdir().unwrap();
    // 24 bytes hold three offset index entries but only two time index entries (12 bytes each); with an
    // entry for every batch after the first, the time index fills at the third batch.
    let mut log = open(
        dir.path(),
        config(&[("segment.index.bytes", "24"), ("index.interval.bytes", "0")]),
    );
    for i in 0..7 {
        log.append(&mut records(1, i), 0).unwrap();
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 3, 6]);
    assert_contiguous(&log);
}

#[test]
fn finds_records_by_time_inside_batches_across_segments_and_codecs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(
        dir.path(),
        config(&[("segment.bytes", "600"), ("index.interval.bytes", "1")]),
    );
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    // Batch i holds 10 records with timestamps 1000i .. 1000i + 90, step 10, encoded with codec i % 5.
    for i in 0..20i64 {
        let values: Vec<Vec<u8>> = (0..10).map(|r| format!("{i}/{r}").into_bytes()).collect();
        let recs: Vec<Record<'_>> = values
            .iter()
            .enumerate()
            .map(|(r, v)| Record {
                value: Some(v),
                timestamp: 1000 * i + 10 * r as i64,
                ..Default::default()
            })
            .collect();
        log.append(&mut encode(&recs, codecs[i as usize % 5]), 0).unwrap();
    }
    assert!(log.segment_count() > 3);
    let at = |t| log.offset_for_timestamp(t).unwrap();
    assert_eq!(
        at(i64::MIN),
        Some(TimestampOffset {
            timestamp: 0,
            offset: 0
        })
    );
    assert_eq!(
        at(0),
        Some(TimestampOffset {
            timestamp: 0,
            offset: 0
        })
    );
    assert_eq!(
        at(1),
        Some(TimestampOffset {
            timestamp: 10,
            offset: 1
        })
    );
    assert_eq!(
        at(5030),
        Some(TimestampOffset {
            timestamp: 5030,
            offset: 53
        })
    );
    assert_eq!(
        at(5031),
        Some(TimestampOffset {
            timestamp: 5040,
            offset: 54
        })
    );
    assert_eq!(
        at(5091),
        Some(TimestampOffset {
            timestamp: 6000,
            offset: 60
        }),
        "first record of the next batch"
    );
    for i in 0..20i64 {
        for r in 0..10i64 {
            let t = 1000 * i + 10 * r;
            assert_eq!(at(t).map(|f| f.offset), Some((10 * i + r) as u64), "timestamp {t}");
        }
    }
    assert_eq!(at(19091), None, "every record is older");
    assert_eq!(
        log.max_timestamp_offset().unwrap(),
        Some(TimestampOffset {
            timestamp: 19090,
            offset: 199
        })
    );

    // Records below the log start offset are not answered.
    log.delete_records_before(55).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap().map(|f| f.offset), Some(55));
}

#[test]
fn the_first_record_with_the_max_timestamp_wins_even_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[]));
    log.append(&mut records(3, 100), 0).unwrap(); // 100, 101, 102
    let values = [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
    let recs: Vec<Record<'_>> = [500, 900, 200]
        .iter()
        .zip(&values)
        .map(|(t, v)| Record {
            value: Some(v),
            timestamp: *t,
            ..Default::default()
        })
        .collect();
    log.append(&mut batch(&recs), 0).unwrap(); // offsets 3, 4, 5
    log.append(&mut records(2, 300), 0).unwrap();
    assert_eq!(
        log.max_timestamp_offset().unwrap(),
        Some(TimestampOffset {
            timestamp: 900,
            offset: 4
        })
    );
    assert_eq!(
        log.offset_for_timestamp(150).unwrap(),
        Some(TimestampOffset {
            timestamp: 500,
            offset: 3
        })
    );
    assert_eq!(
        log.offset_for_timestamp(600).unwrap(),
        Some(TimestampOffset {
            timestamp: 900,
            offset: 4
        })
    );
}

#[test]
fn truncation_removes_whole_batches_and_appends_continue_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let batch_bytes = records(5, 0).len() as u64;
    let mut log = open(dir.path(), config(&[("segment.bytes", &(batch_bytes * 2).to_string())]));
    for i in 0..8 {
        log.append(&mut records(5, i * 10), 0).unwrap(); // offsets 5i..5i+4, two batches a segment
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 10, 20, 30]);

    assert_eq!(log.truncate_to(27).unwrap(), 25, "the batch holding 27 goes whole");
    assert_eq!(log.segment_base_offsets(), vec![0, 10, 20]);
    assert_eq!(log.log_end_offset(), 25);
    assert_eq!(log.max_timestamp_offset().unwrap().unwrap().timestamp, 44);
    assert_eq!(
        log.offset_for_timestamp(50).unwrap(),
        None,
        "no trace of truncated timestamps"
    );

    assert_eq!(log.truncate_to(20).unwrap(), 20, "a cut at a segment's base empties it");
    log.append(&mut records(5, 0), 0).unwrap();
    assert_eq!(log.log_end_offset(), 25);
    assert_eq!(log.truncate_to(100).unwrap(), 25, "past the end changes nothing");
    assert_contiguous(&log);

    assert_eq!(log.truncate_to(0).unwrap(), 0);
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset(), log.segment_count()),
        (0, 0, 1)
    );
    log.append(&mut records(1, 0), 0).unwrap();
    assert_contiguous(&log);
}

#[test]
fn delete_records_moves_the_log_start_and_frees_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let batch_bytes = records(5, 0).len() as u64;
    let mut log = open(dir.path(), config(&[("segment.bytes", &(batch_bytes * 2).to_string())]));
    for i in 0..6 {
        log.append(&mut records(5, i), 0).unwrap();
    }
    assert_eq!(log.delete_records_before(12).unwrap(), 12);
    assert_eq!(log.segment_base_offsets(), vec![10, 20]);
    assert!(matches!(
        log.read(11, ReadLimits::bytes(1)),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    let read = log.read(12, ReadLimits::bytes(1)).unwrap();
    assert_eq!(
        BatchHeader::parse(&read.records).unwrap().base_offset,
        10,
        "the batch holding 12"
    );
    assert_eq!(log.delete_records_before(5).unwrap(), 12, "never moves back");
    assert!(log.delete_records_before(31).is_err(), "past the log end");

    assert_eq!(log.delete_records_before(30).unwrap(), 30);
    assert_eq!(log.size_bytes(), 0, "deleting everything frees everything");
    log.append(&mut records(1, 0), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (30, 31));

    // The log start offset is the caller's to persist; reopened with it, the log agrees.
    drop(log);
    let log = open_with(
        dir.path(),
        config(&[]),
        OpenState {
            log_start_offset: 30,
            ..OpenState::default()
        },
    );
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (30, 31));
}

#[test]
fn retention_deletes_old_and_excess_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let batch_bytes = records(5, 0).len() as u64;
    let mut log = open(dir.path(), config(&[("segment.bytes", &batch_bytes.to_string())]));
    let now = now_ms();
    for age_hours in [10, 9, 8, 3, 2, 1] {
        log.append(&mut records(5, now - age_hours * HOUR_MS), 0).unwrap();
    }
    assert_eq!(log.segment_count(), 6);

    let mut retention = log.config().clone();
    retention.set("retention.ms", &(5 * HOUR_MS).to_string()).unwrap();
    log.set_config(retention.clone());
    let report = log.enforce_retention(now).unwrap();
    assert_eq!(report.segments_deleted, 3);
    assert_eq!(report.bytes_deleted, 3 * batch_bytes);
    assert_eq!(log.log_start_offset(), 15);
    // The files are gone from the directory; their blocks are freed when the caller drops these (the log
    // manager does it without the lock).
    let deleted = log.take_deleted_files();
    assert_eq!(deleted.len(), 3);
    assert!(deleted.iter().all(|f| f.file.metadata().unwrap().len() == batch_bytes));
    assert_eq!(segment_files(dir.path(), "log").len(), 3);
    drop(deleted);
    assert!(log.take_deleted_files().is_empty());

    retention.set("retention.ms", "-1").unwrap();
    retention
        .set("retention.bytes", &(batch_bytes * 2).to_string())
        .unwrap();
    log.set_config(retention.clone());
    assert_eq!(log.enforce_retention(now).unwrap().segments_deleted, 1);
    assert_eq!(log.size_bytes(), batch_bytes * 2);

    // When everything is past retention.ms, the active segment is rolled and goes too.
    retention.set("retention.bytes", "-1").unwrap();
    retention.set("retention.ms", "1000").unwrap();
    log.set_config(retention);
    log.enforce_retention(now + HOUR_MS).unwrap();
    assert_eq!(log.size_bytes(), 0);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (30, 30));
}

#[test]
fn a_clean_close_reopens_without_recovery_and_with_everything() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [("segment.bytes", "4096"), ("index.interval.bytes", "100")];
    let mut log = open(dir.path(), config(&settings));
    for i in 0..50 {
        log.append(&mut records(1 + i % 7, i as i64 * 100), 0).unwrap();
    }
    let before = all_batches(&log);
    let (end, start) = log.close().unwrap();
    assert_eq!((end, start), (before.last().unwrap().0.last_offset() as u64 + 1, 0));
    drop(log);

    let state = OpenState {
        recovery_point: end,
        log_start_offset: 0,
        clean_shutdown: true,
    };
    let (mut log, report) = Log::open(dir.path(), config(&settings), HandleCache::new(16), state).unwrap();
    assert_eq!(report.segments_recovered, 0);
    assert_eq!(all_batches(&log), before);
    assert_eq!(
        log.offset_for_timestamp(2550).unwrap().unwrap().offset,
        before[26].0.base_offset as u64
    );
    log.append(&mut records(1, 0), 0).unwrap();
    assert_eq!(log.log_end_offset(), end + 1);
    assert_contiguous(&log);
}

/// Appends `n` one-record batches, then drops the log without closing it (as a crash would leave it).
fn crashed_log(dir: &Path, settings: &[(&str, &str)], n: usize) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut log = open(dir, config(settings));
    for i in 0..n {
        log.append(&mut records(1, i as i64), 0).unwrap();
    }
    let batches = all_batches(&log);
    drop(log);
    batches
}

fn segment_files(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == suffix))
        .collect();
    files.sort();
    files
}

#[test]
fn a_flipped_byte_in_the_tail_cuts_the_log_there_and_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let before = crashed_log(dir.path(), &[], 20);
    // Corrupt a byte inside batch 15's records: it and everything after must go; 0..15 must stay.
    let log_file = &segment_files(dir.path(), "log")[0];
    let mut bytes = std::fs::read(log_file).unwrap();
    let batch_15_start: usize = before[..15].iter().map(|(_, b)| b.len()).sum();
    bytes[batch_15_start + 70] ^= 0x20;
    std::fs::write(log_file, &bytes).unwrap();

    let (log, report) = Log::open(dir.path(), config(&[]), HandleCache::new(16), OpenState::default()).unwrap();
    assert_eq!(report.bytes_truncated, (bytes.len() - batch_15_start) as u64);
    assert_eq!(log.log_end_offset(), 15);
    assert_eq!(all_batches(&log), before[..15]);
    assert_eq!(std::fs::metadata(log_file).unwrap().len(), batch_15_start as u64);
}

#[test]
fn a_torn_write_at_the_end_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let before = crashed_log(dir.path(), &[], 10);
    let log_file = &segment_files(dir.path(), "log")[0];
    let len = std::fs::metadata(log_file).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(log_file).unwrap();
    file.set_len(len - 3).unwrap(); // the last batch lost its tail

    let mut log = open(dir.path(), config(&[]));
    assert_eq!(all_batches(&log), before[..9]);
    log.append(&mut records(1, 0), 0).unwrap();
    assert_eq!(log.log_end_offset(), 10);
    assert_contiguous(&log);
}

#[test]
fn corruption_in_an_older_segment_drops_the_segments_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let batch_bytes = records(1, 0).len();
    let settings = [("segment.bytes", "500")];
    let before = crashed_log(dir.path(), &settings, 20);
    let logs = segment_files(dir.path(), "log");
    assert!(logs.len() >= 3);
    // Break the second batch of the second segment; only a recovery from offset 0 looks at it.
    let mut bytes = std::fs::read(&logs[1]).unwrap();
    bytes[batch_bytes + 30] ^= 0x01;
    std::fs::write(&logs[1], &bytes).unwrap();
    let second_base: u64 = logs[1].file_stem().unwrap().to_str().unwrap().parse().unwrap();

    let log = open(dir.path(), config(&settings));
    assert_eq!(log.log_end_offset(), second_base + 1);
    assert_eq!(all_batches(&log), before[..second_base as usize + 1]);
    assert_eq!(segment_files(dir.path(), "log").len(), 2);
}

#[test]
fn damaged_indexes_are_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [("index.interval.bytes", "1"), ("segment.bytes", "2000")];
    let mut log = open(dir.path(), config(&settings));
    for i in 0..40 {
        log.append(&mut records(2, i * 10), 0).unwrap();
    }
    let before = all_batches(&log);
    let (end, _) = log.close().unwrap();
    drop(log);
    let indexes = segment_files(dir.path(), "index");
    std::fs::remove_file(&indexes[0]).unwrap(); // missing
    std::fs::write(&indexes[1], [0xffu8; 13]).unwrap(); // torn
    std::fs::write(&segment_files(dir.path(), "timeindex")[2], [0u8; 24]).unwrap(); // nonsense

    let state = OpenState {
        recovery_point: end,
        log_start_offset: 0,
        clean_shutdown: true,
    };
    let log = open_with(dir.path(), config(&settings), state);
    assert_eq!(all_batches(&log), before);
    for offset in 0..end {
        let read = log.read(offset, ReadLimits::bytes(1)).unwrap();
        let header = BatchHeader::parse(&read.records).unwrap();
        assert!(header.base_offset as u64 <= offset && offset <= header.last_offset() as u64);
    }
    assert_eq!(log.offset_for_timestamp(205).unwrap().unwrap().offset, 42);
}

#[test]
fn garbage_on_disk_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x9e3779b97f4a7c15u64;
    for round in 0..20 {
        let sub = dir.path().join(format!("round-{round}"));
        std::fs::create_dir_all(&sub).unwrap();
        let mut garbage = vec![0u8; 64 + round * 37];
        for byte in &mut garbage {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *byte = seed as u8;
        }
        // A plausible header start in half the rounds, so parsing gets past the magic byte.
        if round % 2 == 0 {
            garbage[16] = 2;
        }
        std::fs::write(sub.join("00000000000000000000.log"), &garbage).unwrap();
        std::fs::write(sub.join("00000000000000000000.index"), &garbage[..round * 3]).unwrap();
        for clean_shutdown in [false, true] {
            let state = OpenState {
                clean_shutdown,
                ..OpenState::default()
            };
            let mut log = open_with(&sub, config(&[]), state);
            assert_eq!(log.log_end_offset(), 0, "garbage is not a batch");
            log.append(&mut records(1, 0), 0).unwrap();
            assert_contiguous(&log);
            log.truncate_to(0).unwrap();
            std::fs::write(sub.join("00000000000000000000.log"), &garbage).unwrap();
        }
    }
}

#[test]
fn flush_messages_moves_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[("flush.messages", "3")]));
    log.append(&mut records(2, 0), 0).unwrap();
    assert_eq!(log.recovery_point(), 0);
    log.append(&mut records(2, 0), 0).unwrap();
    assert_eq!(log.recovery_point(), 4);
    log.append(&mut records(1, 0), 0).unwrap();
    assert_eq!(log.recovery_point(), 4);
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), 5);
}

#[test]
fn a_shared_handle_budget_keeps_many_logs_usable() {
    let dir = tempfile::tempdir().unwrap();
    let handles = HandleCache::new(8);
    let settings = [("index.interval.bytes", "1"), ("segment.bytes", "300")];
    let mut logs: Vec<Log> = (0..20)
        .map(|i| {
            Log::open(
                dir.path().join(format!("t-{i}")),
                config(&settings),
                Arc::clone(&handles),
                OpenState::default(),
            )
            .unwrap()
            .0
        })
        .collect();
    for round in 0..10 {
        for log in &mut logs {
            log.append(&mut records(2, round), 0).unwrap();
        }
        assert!(handles.open_count() <= handles.capacity());
    }
    for log in &logs {
        assert_eq!(log.log_end_offset(), 20);
        assert_contiguous(log);
        // Batch 4 holds timestamps 4 and 5, at offsets 8 and 9.
        assert_eq!(log.offset_for_timestamp(5).unwrap().unwrap().offset, 9);
    }
}

/// Set in the child process of [`a_full_disk_fails_appends_cleanly_and_the_log_reopens`].
const DISK_FULL_DIR: &str = "STRATA_TEST_DISK_FULL_DIR";
const DISK_FULL_LIMIT_KIB: u64 = 12 * 1024;

/// Runs only as the child of the test below: appends into a file-size limit until the "disk" is full.
#[test]
fn disk_full_child() {
    let Some(dir) = std::env::var_os(DISK_FULL_DIR) else {
        return;
    };
    let mut log = open(Path::new(&dir), config(&[]));
    let big = records(150, 0); // about 5 KiB
    let mut acked = 0u64;
    let error = loop {
        match log.append(&mut big.clone(), 0) {
            Ok(info) => acked = info.log_end_offset,
            Err(e) => break e,
        }
        assert!(
            log.size_bytes() < 4 * DISK_FULL_LIMIT_KIB * 1024,
            "the file-size limit never hit"
        );
    };
    assert!(
        matches!(error, AppendError::Storage(strata_storage::Error::Io { .. })),
        "{error}"
    );
    // Still refused, still no panic, and nothing half-written is visible.
    assert!(log.append(&mut big.clone(), 0).is_err());
    assert_eq!(log.log_end_offset(), acked);
    // A new leader epoch whose first batch was not written is not recorded either.
    assert!(log.append(&mut big.clone(), 1).is_err());
    assert_eq!(log.latest_epoch(), Some(0));
    assert_contiguous(&log);
    // A small batch still fits in what is left: the log keeps working when space allows.
    log.append(&mut records(1, 0), 0).unwrap();
    acked += 1;
    log.close().unwrap();
    println!("acked {acked}");
}

#[test]
fn a_full_disk_fails_appends_cleanly_and_the_log_reopens() {
    let dir = tempfile::tempdir().unwrap();
    // A file-size limit makes writes fail with EFBIG like a full disk fails them with ENOSPC, without
    // privileges. SIGXFSZ is ignored (inherited through exec) so the write returns an error instead.
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {DISK_FULL_LIMIT_KIB}; exec \"$0\" \"$@\""
        ))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "disk_full_child", "--nocapture", "--test-threads=1"])
        .env(DISK_FULL_DIR, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let acked: u64 = stdout
        .lines()
        .find_map(|line| line.split_once("acked ").map(|(_, n)| n))
        .expect("the child reports what was acknowledged")
        .parse()
        .unwrap();
    assert!(acked > 1000);

    for clean_shutdown in [true, false] {
        let state = OpenState {
            recovery_point: 0,
            log_start_offset: 0,
            clean_shutdown,
        };
        let log = open_with(dir.path(), config(&[]), state);
        assert_eq!(
            log.log_end_offset(),
            acked,
            "every acknowledged record, and nothing else"
        );
        assert_contiguous(&log);
        assert_eq!(log.latest_epoch(), Some(0), "the failed epoch left no trace");
    }
}

#[test]
fn a_recovered_log_reopens_cleanly_without_rebuilding_anything() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [("segment.bytes", "500"), ("index.interval.bytes", "1")];
    crashed_log(dir.path(), &settings, 30);
    // Unclean open: every segment is recovered and its indexes rebuilt; then a clean close.
    let mut log = open(dir.path(), config(&settings));
    let before = all_batches(&log);
    let (end, _) = log.close().unwrap();
    drop(log);
    let sealed_index = &segment_files(dir.path(), "index")[0];
    let entries = std::fs::metadata(sealed_index).unwrap().len();
    assert!(
        entries < 1024,
        "a sealed segment's index is trimmed to its entries, not {entries} bytes"
    );

    let state = OpenState {
        recovery_point: end,
        log_start_offset: 0,
        clean_shutdown: true,
    };
    let (log, report) = Log::open(dir.path(), config(&settings), HandleCache::new(16), state).unwrap();
    assert_eq!(report.segments_recovered, 0);
    assert_eq!(
        std::fs::metadata(sealed_index).unwrap().len(),
        entries,
        "nothing was rebuilt"
    );
    assert_eq!(all_batches(&log), before);
}

/// A batch of records with the given keys, values (None: a tombstone) and timestamps.
fn keyed(entries: &[(&str, Option<&str>)], timestamp: i64, codec: Compression) -> Vec<u8> {
    let recs: Vec<Record<'_>> = entries
        .iter()
        .map(|(k, v)| Record {
            key: Some(k.as_bytes()),
            value: v.map(str::as_bytes),
            timestamp,
            ..Default::default()
        })
        .collect();
    encode(&recs, codec)
}

/// Every record of the log from its start: (offset, key, value).
fn all_records(log: &Log) -> Vec<(i64, String, Option<String>)> {
    all_batches(log)
        .iter()
        .flat_map(|(_, bytes)| batch::records(bytes).unwrap())
        .map(|r| {
            let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
            let value = r.has_value.then(|| {
                // The value is the last bytes of the record body, before a zero header count.
                let body = &r.encoded;
                String::from_utf8_lossy(&body[body.len() - 1 - 6..body.len() - 1]).into_owned()
            });
            (r.offset, key, value)
        })
        .collect()
}

#[test]
fn compaction_keeps_the_newest_record_of_each_key_and_drops_old_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let settings = [
        ("segment.bytes", "300"),
        ("cleanup.policy", "compact"),
        ("delete.retention.ms", "3600000"),
    ];
    let mut log = open(dir.path(), config(&settings));
    // Keys k0..k4 updated 20 times ("v-NNNN", six bytes), compressed and not, over many segments.
    let codecs = [Compression::None, Compression::Lz4, Compression::Zstd];
    for round in 0..20 {
        for k in 0..5 {
            let (key, value) = (format!("k{k}"), format!("v-{:04}", round * 5 + k));
            log.append(&mut keyed(&[(&key, Some(&value))], now, codecs[(round + k) % 3]), 0)
                .unwrap();
        }
    }
    // k4 is deleted by a tombstone that is old enough to go; k3 by a recent one that must stay.
    log.append(&mut keyed(&[("k4", None)], now - 2 * HOUR_MS, Compression::None), 0)
        .unwrap();
    log.append(&mut keyed(&[("k3", None)], now, Compression::None), 0)
        .unwrap();
    log.roll().unwrap();
    log.append(&mut keyed(&[("k0", Some("v-late"))], now, Compression::None), 0)
        .unwrap();
    let (size, end) = (log.size_bytes(), log.log_end_offset());

    let report = log.compact(now).unwrap();
    assert!(
        report.segments_rewritten > 0 && log.size_bytes() < size / 4,
        "{report:?}, {} of {size}",
        log.size_bytes()
    );
    assert_eq!(log.log_end_offset(), end, "offsets never change");
    let survivors = all_records(&log);
    let expected = vec![
        (95, "k0".to_owned(), Some("v-0095".to_owned())),
        (96, "k1".to_owned(), Some("v-0096".to_owned())),
        (97, "k2".to_owned(), Some("v-0097".to_owned())),
        (101, "k3".to_owned(), None),
        (102, "k0".to_owned(), Some("v-late".to_owned())),
    ];
    assert_eq!(survivors, expected, "the active segment is not compacted");
    // Reads from removed offsets go on to the next record, and lookups still work.
    let read = log.read(3, ReadLimits::bytes(1)).unwrap();
    assert_eq!(BatchHeader::parse(&read.records).unwrap().base_offset, 95);
    assert_eq!(log.compact(now).unwrap(), Default::default(), "nothing new to compact");

    // The compacted files reopen, clean and after a crash.
    let (end, start) = log.close().unwrap();
    drop(log);
    for clean_shutdown in [true, false] {
        let state = OpenState {
            recovery_point: end,
            log_start_offset: start,
            clean_shutdown,
        };
        let log = open_with(dir.path(), config(&settings), state);
        assert_eq!(all_records(&log), expected, "clean_shutdown = {clean_shutdown}");
    }
}

#[test]
fn an_interrupted_compaction_leaves_the_original_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[]));
    log.append(&mut records(3, 0), 0).unwrap();
    let before = all_batches(&log);
    drop(log);
    std::fs::write(dir.path().join("00000000000000000000.log.cleaned"), b"half a rewrite").unwrap();
    let log = open(dir.path(), config(&[]));
    assert_eq!(all_batches(&log), before);
    assert!(!dir.path().join("00000000000000000000.log.cleaned").exists());
}

#[test]
fn a_rolled_segment_fsync_finishing_after_a_truncation_keeps_the_recovery_point_below_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(&[]));
    log.append(&mut records(10, 0), 0).unwrap();
    log.roll().unwrap(); // its fsync runs in the background, to make offsets below 10 durable
    assert_eq!(log.truncate_to(5).unwrap(), 0);
    log.append(&mut records(7, 0), 0).unwrap(); // offsets 0..7, not flushed
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        log.reap_rolled_syncs();
        assert!(
            log.recovery_point() == 0,
            "recovery point {} covers records appended after the truncation",
            log.recovery_point()
        );
    }
}
