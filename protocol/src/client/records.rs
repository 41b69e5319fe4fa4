//! Records to Kafka v2 record batches and back.
//!
//! [`BatchBuilder`] collects records and encodes them with `kafka-protocol`'s `RecordBatchEncoder` as one
//! batch, compressed with any Kafka codec. A record's key and value are [`Bytes`], so a caller that slices
//! them out of a larger buffer (stdin read in chunks, a benchmark's one payload) copies nothing until the
//! batch is encoded, and an empty [`Headers`] map allocates nothing: building a batch costs no allocation
//! per record.
//!
//! [`decode_batches`] is the way back for fetched bytes. A fetch response may end in a partial batch (the
//! broker cuts at a byte limit), so it decodes only the batches that arrived whole.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};

use super::{ClientError, Result};

pub use kafka_protocol::records::{Compression, Record};

/// Record headers: names to values (a value may be null), in order.
pub type Headers = kafka_protocol::indexmap::IndexMap<StrBytes, Option<Bytes>>;

/// Bytes of a v2 batch before its first record: base offset (8), length (4), leader epoch (4), magic (1),
/// CRC (4), attributes (2), last offset delta (4), first and max timestamps (8 + 8), producer id (8),
/// producer epoch (2), base sequence (4), record count (4).
pub const BATCH_HEADER_BYTES: usize = 61;
/// Where a batch's `i32` length ends: the length counts the bytes after it.
const BATCH_LENGTH_END: usize = 12;
/// Where the last offset delta starts.
const LAST_OFFSET_DELTA_AT: usize = 23;
const MAGIC_AT: usize = 16;
const _: () = assert!(LAST_OFFSET_DELTA_AT + 4 + 8 + 8 + 8 + 2 + 4 + 4 == BATCH_HEADER_BYTES);

/// Parses a codec name as Kafka's `compression.type` spells it.
pub fn parse_compression(name: &str) -> Option<Compression> {
    Some(match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => return None,
    })
}

/// Collects records into one v2 record batch.
#[derive(Debug)]
pub struct BatchBuilder {
    compression: Compression,
    records: Vec<Record>,
    /// Encoded size so far, before compression, header included.
    size_bytes: usize,
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> Self {
        Self {
            compression,
            records: Vec::new(),
            size_bytes: BATCH_HEADER_BYTES,
        }
    }

    /// Number of records added since the last [`build`](Self::build).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The batch's size before compression if it were built now.
    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    /// Whether adding a record of `record_bytes` (see [`record_bytes`]) would take a non-empty batch past
    /// `batch_bytes_max`. An empty batch always takes one record, however large.
    pub fn would_exceed(&self, record_bytes: usize, batch_bytes_max: usize) -> bool {
        !self.is_empty() && self.size_bytes + record_bytes > batch_bytes_max
    }

    /// Adds a record with a creation timestamp in milliseconds since the epoch.
    pub fn push(&mut self, key: Option<Bytes>, value: Option<Bytes>, headers: Headers, timestamp_ms: i64) {
        self.size_bytes += record_bytes(key.as_deref(), value.as_deref(), &headers);
        let index = self.records.len() as i64;
        self.records.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            // The broker assigns offsets; these are only the deltas within the batch.
            offset: index,
            // The encoder starts a new batch wherever `offset - sequence` changes and derives the base
            // sequence from the first record: `index - 1` keeps one batch with base sequence -1 (none),
            // as a producer without idempotence sends.
            sequence: (index as i32).wrapping_sub(1),
            timestamp: timestamp_ms,
            key,
            value,
            headers,
        });
    }

    /// Encodes the records added so far as one batch, and empties the builder for the next one.
    pub fn build(&mut self) -> Result<Bytes> {
        if self.records.is_empty() {
            return Err(ClientError::Records("a batch needs at least one record".into()));
        }
        let mut buf = BytesMut::with_capacity(self.size_bytes);
        let options = RecordEncodeOptions {
            version: 2,
            compression: self.compression,
        };
        RecordBatchEncoder::encode(&mut buf, &self.records, &options)
            .map_err(|e| ClientError::Records(format!("encoding: {e}")))?;
        self.records.clear();
        self.size_bytes = BATCH_HEADER_BYTES;
        Ok(buf.freeze())
    }
}

/// Encoded size of one record in a v2 batch, within a few bytes: the timestamp and offset deltas are taken
/// at their usual size.
pub fn record_bytes(key: Option<&[u8]>, value: Option<&[u8]>, headers: &Headers) -> usize {
    let bytes_field = |b: Option<&[u8]>| b.map_or(1, |b| varint_bytes(b.len()) + b.len());
    let headers_bytes: usize = headers
        .iter()
        .map(|(k, v)| bytes_field(Some(k.as_bytes())) + bytes_field(v.as_deref()))
        .sum();
    // attributes (1), timestamp delta (~3), offset delta (~3)
    let body = 1 + 3 + 3 + bytes_field(key) + bytes_field(value) + varint_bytes(headers.len()) + headers_bytes;
    varint_bytes(body) + body
}

/// Length of a zigzag varint holding the non-negative `n`.
fn varint_bytes(n: usize) -> usize {
    let zigzag = (n as u64) << 1;
    (64 - zigzag.leading_zeros() as usize).div_ceil(7).max(1)
}

/// Records decoded from fetched bytes.
#[derive(Debug, Default)]
pub struct Decoded {
    pub records: Vec<Record>,
    /// The offset after the last whole batch, or `None` when no batch was whole.
    pub next_offset: Option<i64>,
}

/// Decodes the whole batches in `bytes`, skipping a partial batch at the end, control records (transaction
/// markers) and records before `from_offset` (a fetch returns the whole batch that holds its offset).
pub fn decode_batches(mut bytes: Bytes, from_offset: i64) -> Result<Decoded> {
    let mut decoded = Decoded::default();
    while bytes.len() >= BATCH_LENGTH_END {
        let length = i32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let length =
            usize::try_from(length).map_err(|_| ClientError::Records(format!("negative batch length {length}")))?;
        if bytes.len() < BATCH_LENGTH_END + length {
            break;
        }
        let mut batch = bytes.split_to(BATCH_LENGTH_END + length);
        if batch.len() < BATCH_HEADER_BYTES {
            return Err(ClientError::Records(format!(
                "batch of {} bytes is too short",
                batch.len()
            )));
        }
        if batch[MAGIC_AT] != 2 {
            return Err(ClientError::Records(format!(
                "record format v{} is not supported",
                batch[MAGIC_AT]
            )));
        }
        let base_offset = i64::from_be_bytes(batch[..8].try_into().expect("8 bytes"));
        let last_delta = i32::from_be_bytes(
            batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
                .try_into()
                .expect("4 bytes"),
        );
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| ClientError::Records(format!("decoding: {e}")))?;
        debug_assert!(!batch.has_remaining());
        decoded.records.extend(
            set.records
                .into_iter()
                .filter(|r| !r.control && r.offset >= from_offset),
        );
        decoded.next_offset = Some(base_offset + i64::from(last_delta) + 1);
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(compression: Compression, values: &[&'static str]) -> Bytes {
        let mut builder = BatchBuilder::new(compression);
        for (i, value) in values.iter().enumerate() {
            let mut headers = Headers::new();
            headers.insert(StrBytes::from_static_str("i"), Some(Bytes::from(i.to_string())));
            builder.push(
                Some(Bytes::from(format!("k{i}"))),
                Some(Bytes::from_static(value.as_bytes())),
                headers,
                1_000 + i as i64,
            );
        }
        builder.build().unwrap()
    }

    #[test]
    fn a_batch_round_trips_with_every_codec() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = build(compression, &["a", "bb", "ccc"]);
            let decoded = decode_batches(batch, 0).unwrap();
            assert_eq!(decoded.next_offset, Some(3), "{compression:?}: one batch of three");
            let values: Vec<_> = decoded.records.iter().map(|r| r.value.clone().unwrap()).collect();
            assert_eq!(values, ["a", "bb", "ccc"]);
            let r = &decoded.records[2];
            assert_eq!((r.offset, r.timestamp, r.sequence), (2, 1002, 1));
            assert_eq!(r.key.as_deref(), Some(&b"k2"[..]));
            assert_eq!(
                r.headers.get("i".as_bytes()).cloned().flatten().as_deref(),
                Some(&b"2"[..])
            );
        }
    }

    #[test]
    fn the_size_estimate_is_close_and_the_base_sequence_is_none() {
        let values = ["x"; 100];
        let mut builder = BatchBuilder::new(Compression::None);
        for value in values {
            builder.push(None, Some(Bytes::from_static(value.as_bytes())), Headers::new(), 1);
        }
        let estimate = builder.size_bytes();
        let batch = builder.build().unwrap();
        assert!(
            batch.len() <= estimate && estimate - batch.len() < 100 * 4,
            "{estimate} vs {}",
            batch.len()
        );
        let base_sequence = i32::from_be_bytes(batch[53..57].try_into().unwrap());
        assert_eq!(base_sequence, -1);
        assert!(builder.is_empty(), "build empties the builder");
    }

    #[test]
    fn a_partial_batch_at_the_end_is_left_for_the_next_fetch_and_earlier_offsets_are_skipped() {
        let first = build(Compression::None, &["a", "b"]);
        let mut second = BytesMut::from(&build(Compression::Lz4, &["c"])[..]);
        second[..8].copy_from_slice(&2i64.to_be_bytes()); // base offset 2
        let mut fetched = BytesMut::new();
        fetched.extend_from_slice(&first);
        fetched.extend_from_slice(&second);
        let whole = fetched.clone().freeze();
        fetched.truncate(fetched.len() - 5);
        let decoded = decode_batches(fetched.freeze(), 1).unwrap();
        assert_eq!(decoded.next_offset, Some(2));
        assert_eq!(decoded.records.len(), 1, "offset 0 is before the fetch offset");
        let decoded = decode_batches(whole, 1).unwrap();
        assert_eq!(decoded.next_offset, Some(3));
        assert_eq!(decoded.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(
            decode_batches(Bytes::from_static(&[0; 11]), 0).unwrap().next_offset,
            None
        );
    }
}
