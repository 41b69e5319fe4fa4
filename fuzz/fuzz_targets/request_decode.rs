//! Request decoding on arbitrary bytes: it may refuse them, but must never panic, abort or allocate
//! what the bytes merely announce. Seed it with the captured librdkafka requests:
//!
//! ```sh
//! cd fuzz && cargo fuzz run request_decode ../broker/tests/fixtures/librdkafka
//! ```

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = strata_protocol::request::decode(bytes::Bytes::copy_from_slice(data), strata_broker::api::supported);
});
