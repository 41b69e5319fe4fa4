//! Arbitrary bytes decoded as the controller's metadata records and replayed
//! (`strata_tests::fuzz::controller_record`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_tests::fuzz::controller_record(data));
