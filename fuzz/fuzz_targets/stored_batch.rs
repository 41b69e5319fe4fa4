//! Arbitrary bytes read as one stored record batch, and decompressed by each codec
//! (`strata_tests::fuzz::stored_batch`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_tests::fuzz::stored_batch(data));
