//! Idempotent producers' state as part of the partition log: judged by `append_as_leader`, kept by
//! followers' appends, snapshotted with the segments, and brought back after a clean restart, a crash and a
//! truncation.

use std::path::Path;

use strata_storage::batch::build::{Record, idempotent};
use strata_storage::{
    AppendError, HANDLES_MAX_DEFAULT, HandleCache, LeaderAppend, Log, LogConfig, OpenState, ProducerError,
};

fn open(dir: &Path, clean_shutdown: bool) -> Log {
    let mut config = LogConfig::default();
    config.set("segment.bytes", "4096").unwrap();
    let state = OpenState {
        clean_shutdown,
        ..OpenState::default()
    };
    Log::open(dir, config, HandleCache::new(HANDLES_MAX_DEFAULT), state)
        .unwrap()
        .0
}

/// A batch of `records` records of producer `id`, epoch `epoch`, starting at `sequence`.
fn produced(id: i64, epoch: i16, sequence: i32, records: usize) -> Vec<u8> {
    let value = [5u8; 200];
    let recs: Vec<Record<'_>> = (0..records)
        .map(|_| Record {
            value: Some(&value),
            ..Default::default()
        })
        .collect();
    idempotent(&recs, id, epoch, sequence)
}

/// Appends as leader; `Ok(base offset)` when appended, `Err(base offset)` when answered as a duplicate.
fn append(log: &mut Log, id: i64, epoch: i16, sequence: i32, records: usize) -> Result<u64, u64> {
    match log
        .append_as_leader(&mut produced(id, epoch, sequence, records), 0)
        .unwrap()
    {
        LeaderAppend::Appended(info) => Ok(info.first_offset),
        LeaderAppend::Duplicate { batch, .. } => Err(batch.base_offset),
    }
}

fn refusal(log: &mut Log, id: i64, epoch: i16, sequence: i32) -> ProducerError {
    match log.append_as_leader(&mut produced(id, epoch, sequence, 1), 0) {
        Err(AppendError::Producer(e)) => e,
        other => panic!("expected a producer error, got {other:?}"),
    }
}

/// Producer 7 writes 30 two-record batches (rolling several 4 KiB segments); producer 9 writes one.
fn write_some(log: &mut Log) -> Vec<u64> {
    let offsets: Vec<u64> = (0..30).map(|i| append(log, 7, 0, i * 2, 2).unwrap()).collect();
    append(log, 9, 3, 0, 1).unwrap();
    offsets
}

fn snapshots(dir: &Path) -> Vec<u64> {
    let mut offsets: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".snapshot").map(|stem| stem.parse().unwrap())
        })
        .collect();
    offsets.sort_unstable();
    offsets
}

/// Retries of the last five batches are answered; older ones, gaps and fenced epochs refused.
fn assert_knows_producers(log: &mut Log, offsets: &[u64]) {
    let end = log.log_end_offset();
    for i in 25..30 {
        assert_eq!(
            append(log, 7, 0, i * 2, 2),
            Err(offsets[i as usize]),
            "retry of batch {i}"
        );
    }
    assert_eq!(append(log, 9, 3, 0, 1), Err(60));
    assert_eq!(log.log_end_offset(), end, "no retry appended");
    assert!(matches!(
        refusal(log, 7, 0, 40),
        ProducerError::OutOfOrderSequence { expected: 60, .. }
    ));
    assert!(matches!(
        refusal(log, 9, 2, 1),
        ProducerError::InvalidProducerEpoch { current_epoch: 3, .. }
    ));
    assert!(matches!(
        refusal(log, 11, 0, 5),
        ProducerError::UnknownProducerId { .. }
    ));
    assert_eq!(append(log, 7, 0, 60, 1), Ok(end), "the next sequence is appended");
}

#[test]
fn the_leader_judges_sequences_and_a_retry_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), false);
    let offsets = write_some(&mut log);
    assert_knows_producers(&mut log, &offsets);
    // Two batches of one producer in one append continue each other.
    let mut both = produced(9, 3, 1, 1);
    both.extend(produced(9, 3, 2, 1));
    assert!(matches!(
        log.append_as_leader(&mut both, 0).unwrap(),
        LeaderAppend::Appended(_)
    ));
}

#[test]
fn producer_state_survives_a_clean_restart_from_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), false);
    let offsets = write_some(&mut log);
    assert!(log.segment_count() > 3);
    let end = log.log_end_offset();
    log.close().unwrap();
    assert_eq!(
        snapshots(dir.path()).last(),
        Some(&end),
        "a snapshot at the log end on close"
    );

    let (mut log, report) = Log::open(
        dir.path(),
        log.config().clone(),
        HandleCache::new(HANDLES_MAX_DEFAULT),
        OpenState {
            clean_shutdown: true,
            ..OpenState::default()
        },
    )
    .unwrap();
    assert_eq!(
        report.producer_batches_replayed, 0,
        "nothing to replay after the close snapshot"
    );
    assert_knows_producers(&mut log, &offsets);
}

#[test]
fn producer_state_survives_a_crash_and_the_loss_of_its_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), false);
    let offsets = write_some(&mut log);
    let segments = log.segment_base_offsets();
    // A snapshot at every roll, at the base of the segment it starts.
    assert_eq!(snapshots(dir.path()), segments[1..].to_vec());
    drop(log); // as a crash leaves it: no close, no snapshot at the end

    let mut log = open(dir.path(), false);
    assert_eq!(
        append(&mut log, 7, 0, 58, 2),
        Err(offsets[29]),
        "replayed past the last snapshot"
    );
    assert_eq!(append(&mut log, 7, 0, 50, 2), Err(offsets[25]), "from the snapshot");
    drop(log);

    for offset in snapshots(dir.path()) {
        std::fs::remove_file(dir.path().join(format!("{offset:020}.snapshot"))).unwrap();
    }
    // A torn snapshot would do the same: its CRC fails and it is skipped (next test).
    let (mut log, report) = Log::open(
        dir.path(),
        LogConfig::default(),
        HandleCache::new(HANDLES_MAX_DEFAULT),
        OpenState::default(),
    )
    .unwrap();
    // Rebuilt from the last two segments, which hold producer 7's last five batches and producer 9's.
    assert!(report.producer_batches_replayed < 31, "not from the whole log");
    assert_knows_producers(&mut log, &offsets[..]);
}

#[test]
fn a_torn_snapshot_falls_back_to_an_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), false);
    let offsets = write_some(&mut log);
    drop(log);
    let newest = *snapshots(dir.path()).last().unwrap();
    std::fs::write(dir.path().join(format!("{newest:020}.snapshot")), b"1\n3\n7 0").unwrap();
    let mut log = open(dir.path(), false);
    assert_knows_producers(&mut log, &offsets);
}

#[test]
fn truncation_rewinds_producer_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), false);
    let offsets = write_some(&mut log);
    // Cut batches 20 and later (and producer 9's), past several roll snapshots.
    let cut = offsets[20];
    log.truncate_to(cut).unwrap();
    assert!(
        snapshots(dir.path()).iter().all(|&s| s <= cut),
        "snapshots past the end go"
    );
    // Batch 20's sequence is next again, not a duplicate; batch 19 is still a retry.
    assert_eq!(append(&mut log, 7, 0, 38, 2), Err(offsets[19]));
    assert!(matches!(
        refusal(&mut log, 7, 0, 42),
        ProducerError::OutOfOrderSequence { expected: 40, .. }
    ));
    assert!(matches!(
        refusal(&mut log, 9, 3, 1),
        ProducerError::UnknownProducerId { .. }
    ));
    assert_eq!(append(&mut log, 7, 0, 40, 2), Ok(cut));

    log.truncate_fully_and_start_at(500).unwrap();
    assert!(snapshots(dir.path()).is_empty());
    assert!(matches!(
        refusal(&mut log, 7, 0, 42),
        ProducerError::UnknownProducerId { .. }
    ));
}

#[test]
fn snapshot_files_are_deleted_with_their_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), false);
    let offsets = write_some(&mut log);
    let segments = log.segment_base_offsets();
    let keep_from = segments[segments.len() - 2];
    log.delete_records_before(keep_from).unwrap();
    let first = log.segment_base_offsets()[0];
    assert_eq!(first, keep_from);
    assert!(snapshots(dir.path()).iter().all(|&s| s >= first));
    assert!(!snapshots(dir.path()).is_empty());
    // Producer 7 wrote past the log start and is still known.
    assert_eq!(append(&mut log, 7, 0, 58, 2), Err(offsets[29]));
}

#[test]
fn a_followers_appends_keep_producer_state_for_when_it_leads() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let mut leader = open(leader_dir.path(), false);
    let mut follower = open(follower_dir.path(), false);
    let offsets = write_some(&mut leader);
    // As a fetcher does: whatever each read brings (reads stop at segment ends).
    while follower.log_end_offset() < leader.log_end_offset() {
        let read = leader
            .read(follower.log_end_offset(), strata_storage::ReadLimits::bytes(1 << 20))
            .unwrap();
        follower.append_replicated(&read.records).unwrap();
    }
    assert_knows_producers(&mut follower, &offsets);
}
