//! What the leader's recompression costs (`compression.type` other than the producer's codec): the
//! throughput of `Log::append_as_leader` for batches sent in each codec, into a log that stores them as
//! sent (`producer`) or in each codec. Results are in `BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p strata-storage --example recompression_cost -- [--records 1000] [--record-bytes 100] [--ms 1000]
//! ```
//!
//! Each batch holds `--records` records of `--record-bytes` bytes of JSON-like text (so they compress as real
//! payloads do). Every cell appends copies of one batch for about `--ms` milliseconds to a fresh log in a
//! temporary directory (page cache, no fsync) and prints records per second and uncompressed MB/s.

use std::time::{Duration, Instant};

use strata_storage::batch::Compression;
use strata_storage::batch::build::{Record, encode};
use strata_storage::{HANDLES_MAX_DEFAULT, HandleCache, Log, LogConfig, OpenState};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

const CODECS: [(Compression, &str); 5] = [
    (Compression::None, "uncompressed"),
    (Compression::Gzip, "gzip"),
    (Compression::Snappy, "snappy"),
    (Compression::Lz4, "lz4"),
    (Compression::Zstd, "zstd"),
];

fn main() {
    let count = arg("--records", 1000);
    let record_bytes = arg("--record-bytes", 100);
    let run_for = Duration::from_millis(arg("--ms", 1000) as u64);
    let values: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            format!("{{\"order\":{i},\"customer\":\"c-{}\",\"state\":\"paid\"}}", i % 97)
                .bytes()
                .cycle()
                .take(record_bytes)
                .collect()
        })
        .collect();
    let keys: Vec<String> = (0..count).map(|i| format!("key-{i}")).collect();
    let timestamp = now_ms();
    let records: Vec<Record<'_>> = values
        .iter()
        .zip(&keys)
        .map(|(v, k)| Record {
            key: Some(k.as_bytes()),
            value: Some(v),
            timestamp,
            headers: &[],
        })
        .collect();
    let uncompressed_bytes = encode(&records, Compression::None).len();
    println!("{count} records of {record_bytes} bytes per batch ({uncompressed_bytes} bytes uncompressed)");
    println!("sent as \\ compression.type | producer | uncompressed | gzip | snappy | lz4 | zstd");
    for (source, source_name) in CODECS {
        let batch = encode(&records, source);
        let mut cells = Vec::new();
        for target in ["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"] {
            let dir = tempfile::tempdir().unwrap();
            let mut config = LogConfig::default();
            config.set("compression.type", target).unwrap();
            config.set("max.message.bytes", "16777216").unwrap();
            let (mut log, _) = Log::open(
                dir.path(),
                config,
                HandleCache::new(HANDLES_MAX_DEFAULT),
                OpenState::default(),
            )
            .unwrap();
            let started = Instant::now();
            let mut appends = 0u64;
            while started.elapsed() < run_for {
                let mut copy = batch.clone();
                log.append_as_leader(&mut copy, 0).unwrap();
                appends += 1;
            }
            let seconds = started.elapsed().as_secs_f64();
            let records_per_second = (appends * count as u64) as f64 / seconds;
            let mb_per_second = (appends * uncompressed_bytes as u64) as f64 / seconds / 1e6;
            cells.push(format!("{:.2} M/s ({mb_per_second:.0} MB/s)", records_per_second / 1e6));
            drop(log);
        }
        println!("{source_name} ({} bytes) | {}", batch.len(), cells.join(" | "));
    }
}
