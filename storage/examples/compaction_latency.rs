//! Append latency while a large compacted log is cleaned: what a producer sees when the log manager's
//! upkeep compacts a big topic of the same data directory. Results are in `BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p strata-storage --example compaction_latency -- [--mb 200] [--same-log]
//! ```
//!
//! 1. Fills a log with `cleanup.policy=compact` with `--mb` MiB of keyed records (`--keys` distinct keys, so
//!    most records are superseded), in 16 MiB segments, and rolls it so every segment is closed.
//! 2. Starts one thread that appends one small batch (one 100-byte record) every `--pace-us` µs, and times
//!    each append from when it was due (so appends queued behind a stall count their wait, as a producer's
//!    would), the wait for the log's lock included. By default it appends to a second log of the
//!    same manager; with `--same-log` to the log being compacted (the worst case for a lock held through
//!    the whole compaction).
//! 3. Measures appends for 3 s with nothing else running (`idle`), then runs `LogManager::maintain` (one
//!    upkeep round: retention, compaction, flushes, checkpoints) and measures appends meanwhile
//!    (`compacting`). Prints p50, p99, p99.9 and max of each, and how long the upkeep took.
//!
//! Only APIs present before and after the partition-lock rework are used, so the same file runs against
//! both versions (see `BENCHMARKS.md` for how).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use strata_storage::batch::build::{Record, batch};
use strata_storage::{LogConfig, LogManager, ManagerConfig, TopicPartition};

const MIB: u64 = 1024 * 1024;

struct Args {
    mb: u64,
    keys: u64,
    pace_us: u64,
    same_log: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        mb: 200,
        keys: 10_000,
        pace_us: 1000,
        same_log: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse().ok()).expect("a number after the flag");
        match arg.as_str() {
            "--mb" => args.mb = value(),
            "--keys" => args.keys = value(),
            "--pace-us" => args.pace_us = value(),
            "--same-log" => args.same_log = true,
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Appends one small batch every `pace` until `stop`, timing each append (lock wait included).
fn appender(
    log: strata_storage::SharedLog,
    pace: Duration,
    stop: Arc<AtomicBool>,
    phase: mpsc::Receiver<()>,
) -> thread::JoinHandle<Vec<Vec<Duration>>> {
    thread::spawn(move || {
        let value = [7u8; 100];
        let mut phases = vec![Vec::new()];
        let mut next = Instant::now();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if phase.try_recv().is_ok() {
                phases.push(Vec::new());
            }
            let key = format!("hot-{}", i % 1000);
            let mut bytes = batch(&[Record {
                key: Some(key.as_bytes()),
                value: Some(&value),
                timestamp: now_ms(),
                headers: &[],
            }]);
            log.lock().unwrap().append(&mut bytes, 0).expect("append");
            // From when the append was due, not from when it started: appends held up behind a stalled one
            // count their wait too (no coordinated omission).
            phases.last_mut().unwrap().push(next.elapsed());
            i += 1;
            next += pace;
            // A fixed pace: an append that ran late does not push the later ones back.
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
        phases
    })
}

fn report(name: &str, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{name:>10}: {:>6} appends  p50 {:>9.1} µs  p99 {:>9.1} µs  p99.9 {:>9.1} µs  max {:>10.1} µs",
        latencies.len(),
        us(at(0.5)),
        us(at(0.99)),
        us(at(0.999)),
        us(*latencies.last().unwrap())
    );
}

fn main() {
    let args = parse_args();
    let dir = tempfile::tempdir_in(std::env::var("STRATA_BENCH_DIR").unwrap_or_else(|_| "target".into()))
        .expect("a temporary directory");
    let (manager, _) =
        LogManager::open(dir.path(), LogConfig::default(), ManagerConfig::default()).expect("open the manager");
    let mut compacted = LogConfig::default();
    compacted.set("cleanup.policy", "compact").unwrap();
    compacted.set("segment.bytes", &(16 * MIB).to_string()).unwrap();
    let big = manager
        .get_or_create(&TopicPartition::new("big", 0), compacted)
        .expect("the compacted log");

    // 1. Fill: batches of 100 records of 100 bytes, keys cycling through `keys`.
    let started = Instant::now();
    let value = [1u8; 100];
    let mut written = 0u64;
    let mut n = 0u64;
    while written < args.mb * MIB {
        let keys: Vec<String> = (0..100).map(|j| format!("key-{}", (n + j) % args.keys)).collect();
        let records: Vec<Record<'_>> = keys
            .iter()
            .map(|k| Record {
                key: Some(k.as_bytes()),
                value: Some(&value),
                timestamp: now_ms(),
                headers: &[],
            })
            .collect();
        let mut bytes = batch(&records);
        written += bytes.len() as u64;
        n += 100;
        big.lock().unwrap().append(&mut bytes, 0).expect("fill");
    }
    {
        let mut log = big.lock().unwrap();
        log.roll().expect("roll");
        log.flush().expect("flush");
    }
    println!(
        "filled {} MiB ({} records, {} keys, {} segments) in {:.1} s",
        written / MIB,
        n,
        args.keys,
        big.lock().unwrap().segment_count(),
        started.elapsed().as_secs_f64()
    );

    let hot = if args.same_log {
        big.clone()
    } else {
        manager
            .get_or_create(&TopicPartition::new("hot", 0), LogConfig::default())
            .expect("the appended log")
    };

    // 2. and 3.
    let stop = Arc::new(AtomicBool::new(false));
    let (phase, phases) = mpsc::channel();
    let appends = appender(hot, Duration::from_micros(args.pace_us), stop.clone(), phases);
    thread::sleep(Duration::from_secs(3));
    phase.send(()).unwrap();
    let upkeep = Instant::now();
    manager.maintain().expect("upkeep");
    let upkeep = upkeep.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut results = appends.join().unwrap().into_iter();
    let size_after = big.lock().unwrap().size_bytes();
    println!(
        "upkeep (compaction) took {:.2} s; compacted log {} MiB -> {:.1} MiB",
        upkeep.as_secs_f64(),
        written / MIB,
        size_after as f64 / MIB as f64
    );
    report("idle", results.next().unwrap());
    report("compacting", results.next().unwrap());
    manager.close().expect("close");
}
