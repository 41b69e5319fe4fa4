//! The bodies of the fuzz targets in `fuzz/`, here so that both of their runners call the same code:
//! `cargo fuzz` (libFuzzer, nightly or `RUSTC_BOOTSTRAP=1`) with the inputs it generates, and
//! `tests/fuzz_corpus.rs` with the committed corpus (`fuzz/corpus/<target>/`), on stable, in every test run.
//!
//! Each body takes arbitrary bytes. The code under test may refuse them but must not panic, abort, or
//! allocate what the bytes merely announce; where an invariant between two readers of the same bytes is
//! cheap to state, the body asserts it, so that libFuzzer reports a violation as a crash.

use bytes::Bytes;
use prost::Message;
use strata_controller::proto::metadata::MetadataBatch;
use strata_controller::proto::raft;
use strata_controller::{MetadataDelta, MetadataImage};
use strata_storage::batch::{self, BATCH_HEADER_BYTES, Compression};

/// A target's body: arbitrary bytes in, a panic if something is wrong.
pub type Body = fn(&[u8]);

/// Every target by the name of its `fuzz/fuzz_targets/<name>.rs` and corpus directory.
pub const TARGETS: [(&str, Body); 3] = [
    ("request_decode", request_decode),
    ("stored_batch", stored_batch),
    ("controller_record", controller_record),
];

/// `request_decode`: a request frame (header and body, without the size prefix) decoded against the APIs and
/// versions the broker supports.
pub fn request_decode(data: &[u8]) {
    let _ = strata_protocol::request::decode(Bytes::copy_from_slice(data), strata_broker::api::supported);
}

/// What a fuzzed batch may decompress to. Small, so that an input of a few KiB that expands to gigabytes is
/// refused after a mebibyte rather than timing out; the bound itself is tested in storage's unit tests.
const DECOMPRESSED_BYTES_MAX: u64 = 1 << 20;

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// `stored_batch`: the bytes read as one record batch, as a leader validates it, as a follower does, and as
/// recovery, time search and compaction read it from disk; then again with the length field and the CRC-32C
/// made to agree with the bytes, since libFuzzer would seldom get past those two checks by itself; and the
/// bytes handed to each decompressor directly.
pub fn stored_batch(data: &[u8]) {
    read_batch(data);
    if data.len() >= BATCH_HEADER_BYTES {
        let mut sealed = data.to_vec();
        batch::build::seal(&mut sealed);
        read_batch(&sealed);
    }
    for codec in CODECS {
        if let Ok(decompressed) = batch::decompress(codec, data, DECOMPRESSED_BYTES_MAX) {
            assert!(
                decompressed.len() as u64 <= DECOMPRESSED_BYTES_MAX,
                "{codec:?} ran past its bound"
            );
        }
    }
}

fn read_batch(bytes: &[u8]) {
    let stored = batch::check_stored(bytes);
    let records = batch::records_within(bytes, DECOMPRESSED_BYTES_MAX);
    let replicated = batch::validate_replicated(bytes);
    match (&stored, &records) {
        (Ok(header), Ok(records)) => assert!(
            records.len() <= header.record_count as usize,
            "{} records read from a batch that declares {}",
            records.len(),
            header.record_count
        ),
        (Err(e), Ok(_)) => panic!("records were read from a batch that fails check_stored: {e}"),
        _ => {}
    }
    if let Ok(header) = &replicated {
        assert_eq!(
            stored.as_ref(),
            Ok(header),
            "a batch a follower accepts is one recovery keeps"
        );
    }
    let Ok(header) = batch::validate_within(bytes, DECOMPRESSED_BYTES_MAX) else {
        return;
    };
    // A batch a leader accepts is one every other reader of the log accepts, record for record.
    assert_eq!(stored, Ok(header), "check_stored refuses a validated batch");
    assert_eq!(replicated, Ok(header), "validate_replicated refuses a validated batch");
    // Unless its base offset, which the log assigns and the CRC does not cover, leaves no room for its
    // records' offsets.
    if header
        .base_offset
        .checked_add(header.last_offset_delta.into())
        .is_none()
    {
        assert!(records.is_err(), "records() read offsets past i64::MAX");
        return;
    }
    let records = records.expect("records() refuses a validated batch");
    assert_eq!(
        records.len(),
        header.record_count as usize,
        "records() of a validated batch"
    );
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.offset, header.base_offset + i as i64, "offset of record {i}");
    }
    if header.is_log_append_time() {
        assert!(records.iter().all(|r| r.timestamp == header.max_timestamp));
    } else {
        let max_timestamp = records.iter().map(|r| r.timestamp).max();
        assert_eq!(
            max_timestamp,
            Some(header.max_timestamp),
            "the records' largest timestamp"
        );
    }
    // What compaction writes when it keeps every record is a batch a leader accepts too, holding the same
    // records.
    let rebuilt = batch::rebuild(&header, bytes, &records);
    let rebuilt_header = batch::validate_within(&rebuilt, DECOMPRESSED_BYTES_MAX).expect("a rebuilt batch validates");
    assert_eq!(rebuilt_header.record_count, header.record_count);
    assert_eq!(
        batch::records_within(&rebuilt, DECOMPRESSED_BYTES_MAX).as_ref(),
        Ok(&records),
        "a rebuilt batch reads back its records"
    );
}

/// `controller_record`: the bytes decoded as each message of the controller's metadata log that carries
/// records (a `MetadataBatch`, a Raft `Entry`, a `Snapshot`), and whatever decodes replayed into an image.
pub fn controller_record(data: &[u8]) {
    if let Ok(batch) = MetadataBatch::decode(data) {
        replay(&batch);
    }
    if let Ok(entry) = raft::Entry::decode(data) {
        if let Some(raft::entry::Payload::Records(batch)) = &entry.payload {
            replay(batch);
        }
        let _ = strata_controller::codec::entry_from_pb(entry);
    }
    if let Ok(snapshot) = raft::Snapshot::decode(data) {
        if let Some(membership) = &snapshot.last_membership {
            let _ = strata_controller::codec::stored_membership_from_pb(membership);
        }
        if let Ok(image) = MetadataImage::from_records(&snapshot.records) {
            check_snapshot(&image);
        }
    }
}

/// Replays `batch` on an empty image, both ways the code does, and again on what it produced (records that
/// change what the first replay created).
fn replay(batch: &MetadataBatch) {
    let empty = MetadataImage::empty();
    let replayed = empty.replay_batch(batch);
    let mut delta = MetadataDelta::new(&empty);
    let by_delta = delta.replay_batch(batch).map(|()| delta.apply());
    assert_eq!(
        replayed, by_delta,
        "MetadataImage::replay_batch and MetadataDelta::replay_batch"
    );
    assert!(empty.is_empty(), "replay changed its base image");
    let Ok(image) = replayed else {
        return;
    };
    check_snapshot(&image);
    if let Ok(again) = image.replay_batch(batch) {
        check_snapshot(&again);
    }
}

/// The records a snapshot holds rebuild the image they were written from.
fn check_snapshot(image: &MetadataImage) {
    assert_eq!(
        MetadataImage::from_records(&image.to_records()).as_ref(),
        Ok(image),
        "an image rebuilt from its snapshot records"
    );
}
