//! What the leader's record validation costs per codec: `batch::validate` (header, CRC-32C, and every record
//! walked, decompressing as it reads) against the header-only checks it replaced, for batches as a producer
//! sends them. Results are in `BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p strata-storage --example validation_cost -- [--records 5000] [--record-bytes 100]
//! ```
//!
//! For each codec it builds one batch of `--records` records of `--record-bytes` bytes of text-like values
//! (so they compress as real payloads do), then times `batch::validate` and `batch::check_stored` (the
//! header, length and CRC checks alone) over enough repetitions to take about a second each, and prints
//! nanoseconds per record and the share of the validation that the record walk adds.

use std::time::{Duration, Instant};

use strata_storage::batch::build::{Record, encode};
use strata_storage::batch::{self, Compression};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// Nanoseconds per call of `f`, over about a second.
fn time(mut f: impl FnMut()) -> f64 {
    let mut runs = 0u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        f();
        runs += 1;
    }
    started.elapsed().as_nanos() as f64 / runs as f64
}

fn main() {
    let count = arg("--records", 5000);
    let record_bytes = arg("--record-bytes", 100);
    let values: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            format!("{{\"order\":{i},\"customer\":\"c-{}\",\"state\":\"paid\"}}", i % 97)
                .bytes()
                .cycle()
                .take(record_bytes)
                .collect()
        })
        .collect();
    let records: Vec<Record<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            key: Some(b"key"),
            value: Some(v),
            timestamp: 1_780_000_000_000 + i as i64,
            headers: &[],
        })
        .collect();
    println!("{count} records of {record_bytes} bytes per batch");
    println!("codec   batch bytes  header+CRC ns/record  validate ns/record  validate MB/s (uncompressed)");
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let batch = encode(&records, codec);
        batch::validate(&batch).expect("a well-formed batch");
        let header_only = time(|| {
            std::hint::black_box(batch::check_stored(std::hint::black_box(&batch)).unwrap());
        });
        let full = time(|| {
            std::hint::black_box(batch::validate(std::hint::black_box(&batch)).unwrap());
        });
        let uncompressed_mb = (count * (record_bytes + 12)) as f64 / 1e6;
        println!(
            "{:<7} {:>11}  {:>19.1}  {:>18.1}  {:>10.0}",
            format!("{codec:?}"),
            batch.len(),
            header_only / count as f64,
            full / count as f64,
            uncompressed_mb / (full / 1e9),
        );
    }
}
