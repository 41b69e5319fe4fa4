//! Request decoding on arbitrary bytes (`strata_tests::fuzz::request_decode`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_tests::fuzz::request_decode(data));
