//! A property test: random sequences of operations on a real log, checked against a plain in-memory model
//! (a list of batches). After every step the whole log must read back exactly as the model says, and its
//! leader-epoch cache must say what the epochs stamped in those batches say.
//!
//! Segment sizes are tiny so that rolls, multi-segment reads, retention and truncation across segment
//! boundaries all happen within a few dozen operations. `PROPTEST_CASES` raises the number of cases.

use std::path::Path;

use proptest::prelude::*;
use strata_storage::batch::BatchHeader;
use strata_storage::batch::build::{Record, assign_offsets, batch};
use strata_storage::{HandleCache, Log, LogConfig, OpenState, ReadError, ReadLimits, ReplicaAppendError};

#[derive(Debug, Clone)]
enum Op {
    /// Appends `batches` batches of `records` records each, in one call, in the current leader epoch.
    Append {
        batches: usize,
        records: usize,
        timestamp: i64,
    },
    /// A new leader: later appends carry an epoch `by` higher.
    NewEpoch {
        by: i32,
    },
    /// Appends as a follower: batches with offsets and the current epoch already assigned, optionally
    /// followed by the first `partial` bytes of one more batch (a fetch response cut short).
    Replicate {
        batches: usize,
        records: usize,
        timestamp: i64,
        partial: Option<usize>,
    },
    /// A follower's append that starts `off` offsets away from the log end: refused, nothing changes.
    ReplicateMisplaced {
        off: i64,
    },
    Roll,
    /// Reads from a point of the log (`at` is a fraction of its length in 1/1000) with a byte limit and an
    /// upper bound `bound` (a fraction of the way from the read point to the log end, like a high watermark).
    Read {
        at: u16,
        max_bytes: usize,
        bound: u16,
    },
    Truncate {
        at: u16,
    },
    DeleteRecords {
        at: u16,
    },
    RetentionBytes {
        bytes: u64,
    },
    RetentionTime {
        keep_after: i64,
    },
    /// Closes cleanly and reopens.
    Reopen,
    /// Drops the log without closing it, as a SIGKILL would, and reopens it unclean. With `torn`, the last
    /// batch loses its final `torn` bytes first, as an interrupted write would leave it.
    Crash {
        torn: Option<usize>,
    },
    FindTime {
        timestamp: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..4usize, 1..6usize, 0..1000i64).prop_map(|(batches, records, timestamp)| Op::Append { batches, records, timestamp }),
        1 => (1..3i32).prop_map(|by| Op::NewEpoch { by }),
        3 => (1..4usize, 1..6usize, 0..1000i64, proptest::option::of(1..80usize))
            .prop_map(|(batches, records, timestamp, partial)| Op::Replicate { batches, records, timestamp, partial }),
        1 => prop_oneof![Just(-1i64), Just(1), Just(5)].prop_map(|off| Op::ReplicateMisplaced { off }),
        1 => Just(Op::Roll),
        3 => (0..=1000u16, 1..2000usize, 0..=1000u16).prop_map(|(at, max_bytes, bound)| Op::Read { at, max_bytes, bound }),
        1 => (0..=1000u16).prop_map(|at| Op::Truncate { at }),
        1 => (0..=1000u16).prop_map(|at| Op::DeleteRecords { at }),
        1 => (0..3000u64).prop_map(|bytes| Op::RetentionBytes { bytes }),
        1 => (0..1000i64).prop_map(|keep_after| Op::RetentionTime { keep_after }),
        1 => Just(Op::Reopen),
        1 => proptest::option::of(1..40usize).prop_map(|torn| Op::Crash { torn }),
        1 => (-10..1100i64).prop_map(|timestamp| Op::FindTime { timestamp }),
    ]
}

/// One batch as the model knows it: its offsets, timestamps, leader epoch and exact stored bytes.
#[derive(Debug, Clone)]
struct Stored {
    base: u64,
    last: u64,
    timestamps: Vec<i64>,
    epoch: i32,
    bytes: Vec<u8>,
}

/// The model: the batches from the log start on, the log start offset, and the current leader epoch.
#[derive(Debug, Default)]
struct Model {
    batches: Vec<Stored>,
    log_start: u64,
    log_end: u64,
    epoch: i32,
}

impl Model {
    fn offset_at(&self, fraction: u16) -> u64 {
        self.log_start + (self.log_end - self.log_start) * u64::from(fraction) / 1000
    }

    /// Keeps batches that hold offsets at or after `start`.
    fn drop_before(&mut self, start: u64) {
        self.batches.retain(|b| b.last >= start);
        self.log_start = self.log_start.max(start);
    }

    /// Records batches the log stored: `bytes` holds them back to back, of the given record timestamps.
    fn push(&mut self, bytes: &[u8], timestamps: Vec<Vec<i64>>) {
        let mut rest = bytes;
        for timestamps in timestamps {
            let header = BatchHeader::parse(rest).unwrap();
            let (one, tail) = rest.split_at(header.total_bytes());
            let base = self.log_end;
            assert_eq!(header.base_offset as u64, base);
            self.log_end += timestamps.len() as u64;
            self.batches.push(Stored {
                base,
                last: self.log_end - 1,
                timestamps,
                epoch: header.partition_leader_epoch,
                bytes: one.to_vec(),
            });
            rest = tail;
        }
    }

    /// The leader-epoch entries the batches imply: the first batch of each higher epoch, the very first
    /// moved up to the log start offset.
    fn epochs(&self) -> Vec<(i32, u64)> {
        let mut out: Vec<(i32, u64)> = Vec::new();
        for b in &self.batches {
            if out.last().is_none_or(|(latest, _)| b.epoch > *latest) {
                out.push((b.epoch, b.base.max(self.log_start)));
            }
        }
        out
    }

    /// Kafka's OffsetsForLeaderEpoch answered from the batches themselves: the largest epoch at or below
    /// `epoch` and the first offset of a later epoch (or the log end for the latest one).
    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, u64)> {
        let latest = self.batches.iter().map(|b| b.epoch).max()?;
        if epoch < 0 || epoch > latest {
            return None;
        }
        if epoch == latest {
            return Some((epoch, self.log_end));
        }
        let floor = self.batches.iter().map(|b| b.epoch).filter(|e| *e <= epoch).max();
        let next = self.batches.iter().find(|b| b.epoch > epoch)?;
        Some((floor.unwrap_or(epoch), next.base.max(self.log_start)))
    }
}

fn config() -> LogConfig {
    let mut config = LogConfig::default();
    config.set("segment.bytes", "400").unwrap();
    config.set("index.interval.bytes", "150").unwrap();
    // Timestamps here are near the epoch; the default segment.ms would roll on every append.
    config.set("segment.ms", &i64::MAX.to_string()).unwrap();
    config.set("retention.ms", "-1").unwrap();
    config
}

fn open(dir: &Path, state: OpenState) -> Log {
    Log::open(dir, config(), HandleCache::new(6), state).unwrap().0
}

/// `batches` client batches back to back, and the timestamps of each.
fn encode_many(batches: usize, records: usize, timestamp: i64, seq: &mut usize) -> (Vec<u8>, Vec<Vec<i64>>) {
    let mut bytes = Vec::new();
    let mut timestamps = Vec::new();
    for _ in 0..batches {
        let (one, times) = encode(records, timestamp, *seq);
        *seq += 1;
        bytes.extend_from_slice(&one);
        timestamps.push(times);
    }
    (bytes, timestamps)
}

/// Stamps offsets from `base` and `epoch` into batches back to back, as a leader stores them.
fn stamp(bytes: &mut [u8], mut base: u64, epoch: i32) {
    let mut at = 0;
    while at < bytes.len() {
        let header = BatchHeader::parse(&bytes[at..]).unwrap();
        let end = at + header.total_bytes();
        assign_offsets(&mut bytes[at..end], base as i64, epoch);
        base += header.record_count as u64;
        at = end;
    }
}

fn encode(records: usize, timestamp: i64, seq: usize) -> (Vec<u8>, Vec<i64>) {
    let values: Vec<Vec<u8>> = (0..records).map(|r| format!("{seq}:{r}").into_bytes()).collect();
    // Timestamps go up and down inside a batch so that "first record at or after T" is not just "first batch".
    let timestamps: Vec<i64> = (0..records).map(|r| timestamp + (r as i64 * 37) % 11).collect();
    let recs: Vec<Record<'_>> = values
        .iter()
        .zip(&timestamps)
        .map(|(v, t)| Record {
            value: Some(v),
            timestamp: *t,
            ..Default::default()
        })
        .collect();
    (batch(&recs), timestamps)
}

/// Reads the whole log and compares it with the model, batch by batch and byte by byte.
fn check(log: &Log, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_start_offset(), model.log_start);
    prop_assert_eq!(log.log_end_offset(), model.log_end);
    let mut offset = model.log_start;
    let mut expected = model.batches.iter();
    while offset < model.log_end {
        let read = log.read(offset, ReadLimits::bytes(700)).unwrap();
        prop_assert!(!read.records.is_empty(), "nothing read at {}", offset);
        let mut rest = &read.records[..];
        while !rest.is_empty() {
            let header = BatchHeader::parse(rest).unwrap();
            let want = expected.next().expect("the log holds more batches than the model");
            prop_assert_eq!(&rest[..header.total_bytes()], &want.bytes[..], "batch at {}", want.base);
            rest = &rest[header.total_bytes()..];
        }
        offset = read.next_offset;
    }
    prop_assert!(expected.next().is_none(), "the model holds batches the log lost");

    let cached: Vec<(i32, u64)> = log.epoch_entries().iter().map(|e| (e.epoch, e.start_offset)).collect();
    if model.batches.is_empty() {
        // After DeleteRecords of everything, Kafka keeps the latest epoch at the log end until an append in
        // a newer one (or a restart) replaces it.
        prop_assert!(
            cached.len() <= 1 && cached.iter().all(|(_, start)| *start == model.log_start),
            "{:?} for an empty log at {}",
            cached,
            model.log_start
        );
    } else {
        prop_assert_eq!(&cached, &model.epochs());
        for epoch in -1..=model.epoch + 1 {
            prop_assert_eq!(
                log.end_offset_for_epoch(epoch),
                model.end_offset_for_epoch(epoch),
                "end offset for epoch {}",
                epoch
            );
        }
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), OpenState::default());
    let mut model = Model::default();
    let mut seq = 0;
    for op in ops {
        match op {
            Op::Append {
                batches,
                records,
                timestamp,
            } => {
                let (mut bytes, timestamps) = encode_many(batches, records, timestamp, &mut seq);
                let info = log.append(&mut bytes, model.epoch).unwrap();
                prop_assert_eq!(info.first_offset, model.log_end);
                // The log rewrote offsets and epochs in place: `bytes` now holds exactly what it stored.
                model.push(&bytes, timestamps);
                prop_assert_eq!(info.log_end_offset, model.log_end);
            }
            Op::NewEpoch { by } => model.epoch += by,
            Op::Replicate {
                batches,
                records,
                timestamp,
                partial,
            } => {
                let (mut bytes, timestamps) = encode_many(batches, records, timestamp, &mut seq);
                stamp(&mut bytes, model.log_end, model.epoch);
                let mut fetched = bytes.clone();
                if let Some(partial) = partial {
                    let (next, _) = encode(records, timestamp, seq);
                    fetched.extend_from_slice(&next[..partial.min(next.len() - 1)]);
                }
                let info = log.append_replicated(&fetched).unwrap();
                prop_assert_eq!(info.batches, batches);
                model.push(&bytes, timestamps);
                prop_assert_eq!(info.log_end_offset, model.log_end);
            }
            Op::ReplicateMisplaced { off } => {
                let Some(base) = model.log_end.checked_add_signed(off) else {
                    continue;
                };
                let (mut bytes, _) = encode_many(1, 2, 0, &mut seq);
                stamp(&mut bytes, base, model.epoch);
                let refused = log.append_replicated(&bytes);
                prop_assert!(
                    matches!(refused, Err(ReplicaAppendError::OffsetMismatch { .. })),
                    "{:?}",
                    refused
                );
            }
            Op::Roll => log.roll().unwrap(),
            Op::Read { at, max_bytes, bound } => {
                let offset = model.offset_at(at);
                let max_offset = offset + (model.log_end - offset) * u64::from(bound) / 1000;
                let limits = ReadLimits {
                    max_bytes,
                    max_offset: Some(max_offset),
                    min_one_batch: true,
                };
                let read = log.read(offset, limits).unwrap();
                // Expected: whole batches from the one holding `offset`, each ending below `max_offset`,
                // within `max_bytes` except that the first is returned whole regardless.
                let mut want = Vec::new();
                let mut next = offset;
                for b in model.batches.iter().filter(|b| b.last >= offset) {
                    if b.last >= max_offset || (!want.is_empty() && want.len() + b.bytes.len() > max_bytes) {
                        break;
                    }
                    want.extend_from_slice(&b.bytes);
                    next = b.last + 1;
                }
                // One read stays within one segment, so it may return a prefix of what the model allows.
                prop_assert!(
                    want.starts_with(&read.records),
                    "read at {} returned bytes the model does not have there",
                    offset
                );
                prop_assert!(
                    !read.records.is_empty() || want.is_empty(),
                    "read at {} returned nothing",
                    offset
                );
                if read.records.len() == want.len() {
                    prop_assert_eq!(read.next_offset, next);
                }
            }
            Op::Truncate { at } => {
                let target = model.offset_at(at);
                let end = log.truncate_to(target).unwrap();
                if target <= model.log_start {
                    // At or below the log start, nothing is left: the log starts afresh at `target`.
                    model.batches.clear();
                    (model.log_start, model.log_end) = (target, target);
                } else if target < model.log_end {
                    // Whole batches go: the new end is the base of the batch holding `target`.
                    let cut = model.batches.iter().position(|b| b.last >= target).unwrap();
                    model.log_end = model.batches[cut].base;
                    model.batches.truncate(cut);
                    model.log_start = model.log_start.min(model.log_end);
                }
                prop_assert_eq!(end, model.log_end);
            }
            Op::DeleteRecords { at } => {
                let target = model.offset_at(at);
                prop_assert_eq!(log.delete_records_before(target).unwrap(), target.max(model.log_start));
                model.drop_before(target);
            }
            Op::RetentionBytes { bytes } => {
                let mut config = config();
                config.set("retention.bytes", &bytes.to_string()).unwrap();
                log.set_config(config);
                let before = log.size_bytes();
                let report = log.enforce_retention(1_000_000).unwrap();
                prop_assert_eq!(before - log.size_bytes(), report.bytes_deleted);
                model.drop_before(log.log_start_offset());
                log.set_config(self::config());
            }
            Op::RetentionTime { keep_after } => {
                let mut config = config();
                config.set("retention.ms", "1000").unwrap();
                log.set_config(config);
                log.enforce_retention(keep_after + 1000).unwrap();
                // Whatever went was older than `keep_after` in every record, and went from the front.
                let start = log.log_start_offset();
                for gone in model.batches.iter().filter(|b| b.last < start) {
                    prop_assert!(
                        gone.timestamps.iter().all(|t| *t < keep_after),
                        "batch at {} was not expired",
                        gone.base
                    );
                }
                model.drop_before(start);
                log.set_config(self::config());
            }
            Op::Reopen => {
                let (end, start) = log.close().unwrap();
                prop_assert_eq!((end, start), (model.log_end, model.log_start));
                drop(log);
                log = open(
                    dir.path(),
                    OpenState {
                        recovery_point: end,
                        log_start_offset: start,
                        clean_shutdown: true,
                    },
                );
            }
            Op::Crash { torn } => {
                let recovery_point = log.recovery_point();
                let start = log.log_start_offset();
                drop(log);
                if let (Some(torn), Some(last)) = (torn, model.batches.last())
                    && recovery_point <= last.base
                {
                    // An interrupted write of the last batch: its final bytes never reached the file.
                    let active = std::fs::read_dir(dir.path())
                        .unwrap()
                        .map(|e| e.unwrap().path())
                        .filter(|p| p.extension().is_some_and(|e| e == "log"))
                        .max()
                        .unwrap();
                    let len = std::fs::metadata(&active).unwrap().len();
                    let cut = torn.min(last.bytes.len()) as u64;
                    if len >= last.bytes.len() as u64 {
                        std::fs::OpenOptions::new()
                            .write(true)
                            .open(&active)
                            .unwrap()
                            .set_len(len - cut)
                            .unwrap();
                        let lost = model.batches.pop().unwrap();
                        model.log_end = lost.base;
                    }
                }
                log = open(
                    dir.path(),
                    OpenState {
                        recovery_point,
                        log_start_offset: start,
                        clean_shutdown: false,
                    },
                );
                if model.log_end < model.log_start {
                    // The persisted log start is past what survived: the log restarts there, empty.
                    model.batches.clear();
                    model.log_end = model.log_start;
                }
            }
            Op::FindTime { timestamp } => {
                let found = log.offset_for_timestamp(timestamp).unwrap();
                let want = model
                    .batches
                    .iter()
                    .flat_map(|b| {
                        b.timestamps
                            .iter()
                            .enumerate()
                            .map(move |(i, t)| (b.base + i as u64, *t))
                    })
                    .find(|(offset, t)| *t >= timestamp && *offset >= model.log_start);
                prop_assert_eq!(found.map(|f| (f.offset, f.timestamp)), want);
            }
        }
        check(&log, &model)?;
    }
    // Out-of-range reads are refused, on both sides.
    let past_end = log.read(model.log_end + 1, ReadLimits::bytes(1));
    prop_assert!(
        matches!(past_end, Err(ReadError::OffsetOutOfRange { .. })),
        "read past the log end"
    );
    if model.log_start > 0 {
        let before_start = log.read(model.log_start - 1, ReadLimits::bytes(1));
        prop_assert!(
            matches!(before_start, Err(ReadError::OffsetOutOfRange { .. })),
            "read before the log start"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn the_log_behaves_like_a_list_of_batches(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
