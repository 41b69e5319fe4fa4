//! Helpers shared by the storage tests.

#![allow(dead_code)] // each test binary uses a different part of this module

use strata_storage::batch::build::{Record, batch};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A client batch of `n` records with timestamps `first_timestamp`, `first_timestamp + 1`, ...
pub fn records(n: usize, first_timestamp: i64) -> Vec<u8> {
    // Fixed-width values, so every batch of `n` records has the same size.
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("value {i:04} at {first_timestamp:020}").into_bytes())
        .collect();
    let recs: Vec<Record<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            value: Some(v),
            timestamp: first_timestamp + i as i64,
            ..Default::default()
        })
        .collect();
    batch(&recs)
}
