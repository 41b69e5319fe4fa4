//! Criterion benchmarks for `strata-storage`, each Strata figure next to a raw-file baseline doing the same
//! I/O with `std::fs` in the same run, so that the ratio (not the absolute figure, which depends on the
//! machine) is what we track. Results and targets are recorded in `BENCHMARKS.md` at the workspace root.
//!
//! ```text
//! cargo bench -p strata-storage --bench storage               # everything (about 2.5 minutes)
//! cargo bench -p strata-storage --bench storage -- append     # one group: append, read_sequential,
//!                                                             #   offset_lookup, reopen
//! ```
//!
//! Groups:
//!
//! - `append`: 16 KiB batches appended, unflushed, to a fresh log vs `write_all` to a fresh file.
//! - `read_sequential`: a ~1 GiB log read front to back from the page cache in 1 MiB reads vs `pread`.
//! - `offset_lookup`: `Log::locate` and a one-batch `Log::read` at random offsets of the ~1 GiB log.
//! - `reopen`: opening the ~1 GiB log after a clean close, and after an unclean stop (full recovery scan).
//!
//! Data lives in a temporary directory under the workspace's `target/` (override with `STRATA_BENCH_DIR`),
//! so Strata and the baselines use the same filesystem. Each append iteration deletes its directory; the shared
//! ~1 GiB log is deleted when all benchmarks have run.

use std::cell::OnceCell;
use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use strata_storage::batch::BATCH_HEADER_BYTES;
use strata_storage::batch::build::{Record, batch};
use strata_storage::{HANDLES_MAX_DEFAULT, HandleCache, Log, LogConfig, OpenState, ReadLimits};
use tempfile::TempDir;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// The batch size every benchmark writes: a typical producer batch (`batch.size` is 16 KiB in Kafka).
const BATCH_BYTES_MAX: usize = 16 * KIB;
/// Bytes of each record's value; records have no key and no headers.
const VALUE_BYTES: usize = 100;
/// Batches appended per timed append sample: 16384 x ~16 KiB = ~256 MiB. Large enough that per-sample
/// overheads vanish, small enough (< `segment.bytes`, 1 GiB) that no segment roll happens while timed.
const APPEND_BATCHES: usize = 16 * 1024;
/// Size of the shared log read by `read_sequential`, `offset_lookup` and `reopen`: one full default segment.
const FIXTURE_BYTES: u64 = 1 << 30;
/// `max_bytes` of each sequential read, and the size of each raw `pread`: a typical fetch size.
const READ_BYTES: usize = MIB;
/// Random offsets pre-generated for `offset_lookup`; the benchmark cycles through them.
const LOOKUP_OFFSETS: usize = 4096;

// ---------------------------------------------------------------------------------------------------------
// Helpers shared by the benchmarks.
// ---------------------------------------------------------------------------------------------------------

/// Where benchmark data goes: the workspace's `target/` directory (or `STRATA_BENCH_DIR`).
fn data_root() -> PathBuf {
    let root = std::env::var_os("STRATA_BENCH_DIR").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("strata-bench")
        },
        PathBuf::from,
    );
    std::fs::create_dir_all(&root).expect("create benchmark data root");
    root
}

/// A fresh, empty directory under [`data_root`], deleted when dropped.
fn scratch_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("bench-")
        .tempdir_in(data_root())
        .expect("create scratch directory")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// An uncompressed v2 batch of 100-byte records (no key), with as many records as fit in 16 KiB (148).
///
/// Timestamps are "now": the log rolls a segment whose first batch is older than `segment.ms` (7 days), so
/// an old timestamp would make every append roll.
fn batch_16k() -> Vec<u8> {
    let value = [b'x'; VALUE_BYTES];
    let timestamp = now_ms();
    let build = |n: usize| {
        let records: Vec<Record<'_>> = (0..n)
            .map(|_| Record {
                value: Some(&value),
                timestamp,
                ..Default::default()
            })
            .collect();
        batch(&records)
    };
    let mut n = 1;
    while build(n + 1).len() <= BATCH_BYTES_MAX {
        n += 1;
    }
    build(n)
}

/// Opens (or creates) the log in `dir` with the default config (1 GiB segments, no flush policy) and its
/// own handle cache, as a broker would for one partition.
fn open_log(dir: &Path, state: OpenState) -> Log {
    let (log, _report) =
        Log::open(dir, LogConfig::default(), HandleCache::new(HANDLES_MAX_DEFAULT), state).expect("open log");
    log
}

/// State for opening a log that was closed cleanly at `end`: no recovery scan.
fn clean_state(end: u64) -> OpenState {
    OpenState {
        recovery_point: end,
        log_start_offset: 0,
        clean_shutdown: true,
    }
}

/// State for opening a log after a SIGKILL with nothing known flushed: every batch is scanned and checked.
fn unclean_state() -> OpenState {
    OpenState {
        recovery_point: 0,
        log_start_offset: 0,
        clean_shutdown: false,
    }
}

/// Path of the `.log` file of the first (here: only) segment.
fn first_segment_file(dir: &Path) -> PathBuf {
    dir.join(format!("{:020}.log", 0))
}

/// Reads `path` once, end to end, so that the timed reads hit the page cache.
fn warm_page_cache(path: &Path) {
    let file = File::open(path).expect("open for warming");
    let mut buf = vec![0u8; READ_BYTES];
    black_box(pread_all(&file, &mut buf));
}

/// The raw read loop: `pread` the whole file in `buf`-sized chunks into one reused buffer. Returns the bytes
/// read.
fn pread_all(file: &File, buf: &mut [u8]) -> u64 {
    let mut position = 0u64;
    loop {
        let n = file.read_at(buf, position).expect("pread");
        if n == 0 {
            return position;
        }
        black_box(&buf[..n]);
        position += n as u64;
    }
}

/// A ~1 GiB log of 16 KiB batches in one segment, closed cleanly, shared by the read, lookup and reopen
/// benchmarks (writing and fsyncing 1 GiB takes several seconds, so it is built once, lazily, only if one of
/// them runs). Each benchmark opens its own `Log` on it and closes it again, so the files on disk are the
/// same before and after every benchmark (and no two `Log`s ever have the same directory open at once).
struct Fixture {
    dir: TempDir,
    /// Log end offset: the offsets are `0..end`.
    end: u64,
    /// Bytes of the `.log` file.
    bytes: u64,
    /// Size of every batch (all batches are identical but for their base offsets).
    batch_bytes: u64,
    records_per_batch: u64,
}

impl Fixture {
    fn build() -> Self {
        let dir = scratch_dir();
        let mut buf = batch_16k();
        let batch_bytes = buf.len() as u64;
        let mut log = open_log(dir.path(), OpenState::default());
        let mut records_per_batch = 0;
        // Fill the first segment without rolling: an append rolls only when it would pass `segment.bytes`.
        while log.size_bytes() + batch_bytes <= FIXTURE_BYTES {
            records_per_batch = log.append(&mut buf, 0).expect("append").records;
        }
        assert_eq!(log.segment_count(), 1, "the fixture must be a single segment");
        let (end, _) = log.close().expect("close");
        let bytes = log.size_bytes();
        drop(log);
        eprintln!(
            "fixture: {} batches of {batch_bytes} bytes ({records_per_batch} records), {bytes} bytes, offsets 0..{end}",
            bytes / batch_bytes
        );
        Self {
            dir,
            end,
            bytes,
            batch_bytes,
            records_per_batch,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Opens the log as after a clean shutdown. Callers must [`Log::close`] it when done, which re-trims the
    /// indexes so the next open finds the same files.
    fn open_clean(&self) -> Log {
        let log = open_log(self.path(), clean_state(self.end));
        assert_eq!(log.log_end_offset(), self.end);
        log
    }

    fn segment_file(&self) -> PathBuf {
        first_segment_file(self.path())
    }
}

// Criterion calls a benchmark's closure once per sample (and per warm-up round), so set-up that must happen
// once (building the fixture, warming the page cache, opening the log) is done on the first call and kept in
// an `Option` outside the closure; logs are closed after the benchmark.

/// The shared fixture, built on first use, with its `.log` file read once so that it is in the page cache.
fn warm_fixture(fixture: &OnceCell<Fixture>) -> &Fixture {
    fixture.get_or_init(|| {
        let fixture = Fixture::build();
        warm_page_cache(&fixture.segment_file());
        fixture
    })
}

/// Closes a log that a benchmark opened on the fixture (if it ran), restoring the files to their state before.
fn close_log(log: Option<Log>) {
    if let Some(mut log) = log {
        log.close().expect("close");
    }
}

/// Pseudo-random numbers in `0..bound` from a 64-bit LCG (Knuth's MMIX constants), taking the high bits: the
/// same sequence on every run, and no extra dependency.
fn lcg_sequence(count: usize, bound: u64) -> Vec<u64> {
    let mut state: u64 = 0x5eed_5eed_5eed_5eed;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % bound
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// 1. append
// ---------------------------------------------------------------------------------------------------------

/// Appends of 16 KiB batches to a fresh log, unflushed, vs `write_all` of the same buffer to a fresh file.
///
/// `iter_custom`, because each iteration needs a fresh, empty log (a log that keeps growing would roll
/// segments mid-measurement and make later samples differ from earlier ones), and creating it (which also
/// preallocates 10 MiB indexes) and deleting 256 MiB afterwards must not count: only the appends are timed.
/// Each iteration writes the same ~256 MiB, so samples are comparable; `Flat` sampling because each
/// iteration takes a good fraction of a second.
fn bench_append(c: &mut Criterion) {
    let mut buf = batch_16k();
    let volume = (buf.len() * APPEND_BATCHES) as u64;

    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Bytes(volume));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(15));

    group.bench_function("strata", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let dir = scratch_dir();
                let mut log = open_log(dir.path(), OpenState::default());
                let start = Instant::now();
                for _ in 0..APPEND_BATCHES {
                    // `append` rewrites the base offset in place, so the same buffer is valid every time.
                    black_box(log.append(&mut buf, 0).expect("append"));
                }
                elapsed += start.elapsed();
                assert_eq!(log.segment_count(), 1, "a roll happened inside the timed part");
                drop(log);
                drop(dir);
            }
            elapsed
        });
    });

    group.bench_function("raw_file", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let dir = scratch_dir();
                let mut file = File::create(first_segment_file(dir.path())).expect("create file");
                let start = Instant::now();
                for _ in 0..APPEND_BATCHES {
                    file.write_all(&buf).expect("write");
                }
                elapsed += start.elapsed();
                drop(file);
                drop(dir);
            }
            elapsed
        });
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------------------
// 2. read_sequential
// ---------------------------------------------------------------------------------------------------------

/// The whole ~1 GiB log read front to back with `Log::read(offset, 1 MiB)`, following `next_offset`, vs a
/// `pread` loop of 1 MiB over the segment's `.log` file into one reused buffer. Both read from the page cache
/// (warmed first; the machine has far more memory than 1 GiB). One iteration is one full pass, so plain `iter`
/// suffices; nothing needs setting up per pass.
fn bench_read_sequential(c: &mut Criterion, fixture: &OnceCell<Fixture>) {
    let mut group = c.benchmark_group("read_sequential");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(10));
    // Both read the whole file; set lazily below would be too late, so use the known fixture size.
    group.throughput(Throughput::Bytes(fixture_bytes(fixture)));

    let mut open = None;
    group.bench_function("strata", |b| {
        let fixture = warm_fixture(fixture);
        let log: &Log = open.get_or_insert_with(|| fixture.open_clean());
        b.iter(|| {
            let mut offset = 0;
            let mut bytes = 0;
            while offset < fixture.end {
                let result = log.read(offset, ReadLimits::bytes(READ_BYTES)).expect("read");
                bytes += result.records.len() as u64;
                offset = result.next_offset;
                black_box(result.records);
            }
            assert_eq!(bytes, fixture.bytes);
            bytes
        });
    });
    close_log(open);

    let mut open = None;
    group.bench_function("raw_pread", |b| {
        let fixture = warm_fixture(fixture);
        let (file, buf) = open.get_or_insert_with(|| {
            (
                File::open(fixture.segment_file()).expect("open segment file"),
                vec![0u8; READ_BYTES],
            )
        });
        b.iter(|| {
            let bytes = pread_all(file, buf);
            assert_eq!(bytes, fixture.bytes);
            bytes
        });
    });
    group.finish();
}

/// The fixture's size for `Throughput`, without building the fixture (a group's throughput is set before we
/// know whether any of its benchmarks passes the filter). The fixture fills one segment with whole 16 KiB
/// batches, so its size follows from the batch size alone.
fn fixture_bytes(fixture: &OnceCell<Fixture>) -> u64 {
    match fixture.get() {
        Some(fixture) => fixture.bytes,
        None => {
            let batch_bytes = batch_16k().len() as u64;
            FIXTURE_BYTES / batch_bytes * batch_bytes
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// 3. offset_lookup
// ---------------------------------------------------------------------------------------------------------

/// Latency of finding the batch holding a random offset of the ~1 GiB log: `Log::locate` (offset index
/// binary search, then a header read), and `Log::read(offset, 1 byte)` (the same, then the whole batch, since
/// a read returns at least one batch). For context, the raw floors: `pread` of one batch header, and of one
/// whole batch, at a random batch position known in advance (no search).
///
/// The offsets are pre-generated and cycled through, so the random generator is not timed; the log is open
/// with its page cache warm. The median is reported (in `estimates.json`) as the typical latency.
fn bench_offset_lookup(c: &mut Criterion, fixture: &OnceCell<Fixture>) {
    let mut group = c.benchmark_group("offset_lookup");
    group.measurement_time(Duration::from_secs(5));

    // The offsets cycle across samples (`i` lives outside the closure), so every sample sees a spread of them.
    let mut i = 0;
    let mut open = None;
    group.bench_function("locate", |b| {
        let fixture = warm_fixture(fixture);
        let (log, offsets) =
            open.get_or_insert_with(|| (fixture.open_clean(), lcg_sequence(LOOKUP_OFFSETS, fixture.end)));
        b.iter(|| {
            let offset = offsets[i % LOOKUP_OFFSETS];
            i += 1;
            log.locate(black_box(offset))
                .expect("locate")
                .expect("offset inside the log")
        });
    });
    close_log(open.map(|(log, _)| log));

    let mut open = None;
    group.bench_function("read_1_byte", |b| {
        let fixture = warm_fixture(fixture);
        let (log, offsets) =
            open.get_or_insert_with(|| (fixture.open_clean(), lcg_sequence(LOOKUP_OFFSETS, fixture.end)));
        b.iter(|| {
            let offset = offsets[i % LOOKUP_OFFSETS];
            i += 1;
            let result = log.read(black_box(offset), ReadLimits::bytes(1)).expect("read");
            debug_assert_eq!(result.records.len() as u64, fixture.batch_bytes);
            result
        });
    });
    close_log(open.map(|(log, _)| log));

    // Raw floors: a `pread` at the position of the batch holding the offset, computed rather than searched
    // (all batches have the same size), into a reused buffer: of the 61-byte batch header, and of the batch.
    for (name, whole_batch) in [("raw_pread_header", false), ("raw_pread_batch", true)] {
        let mut open = None;
        group.bench_function(name, |b| {
            let fixture = warm_fixture(fixture);
            let (file, positions, buf) = open.get_or_insert_with(|| {
                let positions: Vec<u64> = lcg_sequence(LOOKUP_OFFSETS, fixture.end)
                    .into_iter()
                    .map(|offset| offset / fixture.records_per_batch * fixture.batch_bytes)
                    .collect();
                let len = if whole_batch {
                    fixture.batch_bytes as usize
                } else {
                    BATCH_HEADER_BYTES
                };
                (
                    File::open(fixture.segment_file()).expect("open segment file"),
                    positions,
                    vec![0u8; len],
                )
            });
            b.iter(|| {
                let position = positions[i % LOOKUP_OFFSETS];
                i += 1;
                file.read_exact_at(buf, black_box(position)).expect("pread");
                black_box(&buf[..]);
            });
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------------------------
// 4. reopen
// ---------------------------------------------------------------------------------------------------------

/// Opening the ~1 GiB, one-segment log after a clean close (indexes trusted, only the tail after the last
/// index entry read) and after an unclean stop with recovery point 0 (every batch scanned and CRC-checked,
/// both indexes rebuilt, then fsynced), as after a SIGKILL. For context, `raw_read_crc` is the floor of the
/// recovery scan: `pread` the file in 1 MiB chunks and CRC-32C every byte.
///
/// `iter_custom`, because only `Log::open` is timed: after each open the log is closed (untimed), which trims
/// the indexes again, so every sample starts from the same files on disk. (A recovery open rebuilds the
/// indexes identically; it is idempotent.) Small samples: a recovery open takes a good fraction of a second.
fn bench_reopen(c: &mut Criterion, fixture: &OnceCell<Fixture>) {
    let mut group = c.benchmark_group("reopen");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));

    let mut reopen = |name: &str, state: fn(&Fixture) -> OpenState| {
        group.bench_function(name, |b| {
            let fixture = warm_fixture(fixture);
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let handles = HandleCache::new(HANDLES_MAX_DEFAULT);
                    let start = Instant::now();
                    let (mut log, report) = Log::open(
                        fixture.path(),
                        LogConfig::default(),
                        Arc::clone(&handles),
                        state(fixture),
                    )
                    .expect("open");
                    elapsed += start.elapsed();
                    assert_eq!(report.bytes_truncated, 0);
                    assert_eq!(log.log_end_offset(), fixture.end);
                    log.close().expect("close");
                }
                elapsed
            });
        });
    };
    reopen("clean", |fixture| clean_state(fixture.end));
    reopen("recovery", |_| unclean_state());

    let mut buf = vec![0u8; READ_BYTES];
    group.bench_function("raw_read_crc", |b| {
        let fixture = warm_fixture(fixture);
        b.iter(|| {
            let file = File::open(fixture.segment_file()).expect("open segment file");
            let mut position = 0u64;
            let mut crc = 0u32;
            loop {
                let n = file.read_at(&mut buf, position).expect("pread");
                if n == 0 {
                    break;
                }
                crc = crc32c::crc32c_append(crc, &buf[..n]);
                position += n as u64;
            }
            crc
        });
    });
    group.finish();
}

/// All groups in one function so that the shared fixture is built at most once and deleted at the end.
fn storage(c: &mut Criterion) {
    bench_append(c);
    let fixture = OnceCell::new();
    bench_read_sequential(c, &fixture);
    bench_offset_lookup(c, &fixture);
    bench_reopen(c, &fixture);
    drop(fixture);
}

criterion_group!(benches, storage);
criterion_main!(benches);
