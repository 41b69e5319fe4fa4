//! Kafka v2 record batches: the header, its checks, and the few fields the log rewrites.
//!
//! A batch is stored as a client sent it unless the topic's settings say otherwise. The log reads the header,
//! checks it against the bytes present and the CRC-32C, and rewrites two fields that the CRC does not cover:
//! the base offset and the partition leader epoch. On a leader's append ([`validate_as_leader`]) every record
//! is walked once, as Kafka's LogValidator does: decompressed as it is read, in constant memory and at most a
//! bound derived from `max.message.bytes` in all, and checked against the header (count, offset deltas,
//! lengths, timestamps, nothing trailing), so nothing a reader of the log trips over later is ever stored;
//! and against the topic's [`RecordRules`] (a key on a compacted topic, the CreateTime window), whose
//! refusals name each record ([`BatchError::RecordsRejected`]). Readers of stored batches (time search,
//! compaction) still size nothing by a count read from the batch.
//!
//! Two of the topic's settings make the leader change a batch, as Kafka's does, keeping its offsets,
//! producer id, epoch and sequence: `message.timestamp.type=LogAppendTime` sets the timestamp-type attribute
//! and the max timestamp ([`set_log_append_time`], in place), and a `compression.type` other than the
//! producer's codec rebuilds the batch around its records compressed again ([`recompressed`], in
//! [`compress_at`]'s framing, which is Kafka's). Both recompute the CRC.
//!
//! Byte layout (all integers big-endian, as Kafka writes them):
//!
//! ```text
//! offset  size  field
//!      0     8  base offset              rewritten by the log on append
//!      8     4  batch length             bytes after this field (total length - 12)
//!     12     4  partition leader epoch   rewritten by the log on append
//!     16     1  magic                    must be 2
//!     17     4  CRC-32C                  over bytes 21..end
//!     21     2  attributes               bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control
//!     23     4  last offset delta        record count - 1
//!     27     8  base timestamp
//!     35     8  max timestamp
//!     43     8  producer id
//!     51     2  producer epoch
//!     53     4  base sequence
//!     57     4  record count
//!     61     -  records (compressed as a whole when the codec is not none)
//! ```

use std::io::{self, BufRead, BufReader, Read};

use thiserror::Error;

/// Bytes before the records of a v2 batch.
pub const BATCH_HEADER_BYTES: usize = 61;
/// The bytes of a batch that precede the batch length field and so are not counted by it.
pub const BATCH_LENGTH_PREFIX_BYTES: usize = 12;
/// The only batch format Strata stores.
pub const MAGIC_V2: i8 = 2;

const OFFSET_BASE_OFFSET: usize = 0;
const OFFSET_LENGTH: usize = 8;
const OFFSET_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_PRODUCER_ID: usize = 43;
const OFFSET_PRODUCER_EPOCH: usize = 51;
const OFFSET_BASE_SEQUENCE: usize = 53;
const OFFSET_RECORD_COUNT: usize = 57;
const _: () = assert!(OFFSET_RECORD_COUNT + 4 == BATCH_HEADER_BYTES);

/// The smallest encoded record: length, attributes, timestamp delta, offset delta, key length, value length
/// and header count, one byte each.
const RECORD_BYTES_MIN: usize = 7;
/// A bound on what one batch may decompress to when records are decoded (timestamp search only).
const DECOMPRESSED_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Why a batch was refused. None of these appends anything.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch is {len} bytes, shorter than the {BATCH_HEADER_BYTES}-byte v2 header")]
    TooShort { len: usize },
    #[error("batch length field says {declared} bytes follow it but {present} are present")]
    LengthMismatch { declared: i64, present: usize },
    #[error("record batch magic {0} is not supported (only v2 batches are stored)")]
    UnsupportedMagic(i8),
    #[error("CRC-32C mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record count {count} does not match last offset delta {last_offset_delta}")]
    InconsistentCount { count: i32, last_offset_delta: i32 },
    #[error("header says {declared} records but the bytes hold {found}")]
    RecordCountMismatch { declared: i32, found: usize },
    #[error("records section is malformed: {0}")]
    MalformedRecords(&'static str),
    #[error("compression codec {0} is unknown")]
    UnknownCodec(u8),
    #[error("decompressing a {codec:?} batch failed: {reason}")]
    Decompression { codec: Compression, reason: String },
    /// A record that decodes but disagrees with its batch (Kafka's `INVALID_RECORD`).
    #[error("record {index}: {reason}")]
    InvalidRecord { index: usize, reason: String },
    /// Well-formed records the topic's rules refuse (Kafka's LogValidator: a record without a key in a
    /// compacted topic, a timestamp outside the topic's window), each named with its index in the batch
    /// (Kafka's `record_errors`). At most [`RECORD_ERRORS_KEPT_MAX`] are kept; `total` counts them all.
    #[error("{}", rejection_message(*.kind, .errors, *.total))]
    RecordsRejected {
        kind: RejectionKind,
        errors: Vec<RecordError>,
        total: usize,
    },
}

/// The most per-record errors one refused batch carries back (a batch may hold millions of records).
pub const RECORD_ERRORS_KEPT_MAX: usize = 1000;

/// Which Kafka error a batch's refused records amount to: `INVALID_TIMESTAMP` if any record's timestamp
/// was refused, else `INVALID_RECORD`, as Kafka decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    InvalidRecord,
    InvalidTimestamp,
}

/// One refused record: its index in the batch and why (Kafka's `RecordError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub index: usize,
    pub message: String,
}

/// Kafka's wording for a `RecordValidationException`, which clients show.
fn rejection_message(kind: RejectionKind, errors: &[RecordError], total: usize) -> String {
    match kind {
        RejectionKind::InvalidTimestamp => "One or more records have been rejected due to invalid timestamp".into(),
        RejectionKind::InvalidRecord => {
            let shown: Vec<String> = errors
                .iter()
                .take(3)
                .map(|e| format!("RecordError(batchIndex={}, message='{}')", e.index, e.message))
                .collect();
            format!(
                "One or more records have been rejected due to {total} record errors in total, and only showing \
                 the first three errors at most: [{}]",
                shown.join(", ")
            )
        }
    }
}

/// What the leader checks in each record beyond its encoding: the rules that depend on the topic's
/// settings (Kafka's `LogValidator.validateKey` and `validateTimestamp`). The default checks nothing more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordRules {
    /// `cleanup.policy` includes `compact`: every record needs a key (an empty one is a key).
    pub key_required: bool,
    pub timestamps: TimestampRule,
}

/// How a record's timestamp is judged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TimestampRule {
    #[default]
    Unchecked,
    /// `message.timestamp.type=CreateTime`: a record's timestamp (unless -1, none) must lie within
    /// `[now - before_max_ms, now + after_max_ms]`.
    CreateTime {
        now_ms: i64,
        before_max_ms: u64,
        after_max_ms: u64,
    },
    /// `message.timestamp.type=LogAppendTime`: the leader sets the time; a producer may not claim it did.
    LogAppendTime,
}

/// Kafka's `RecordBatch.NO_TIMESTAMP`.
const NO_TIMESTAMP: i64 = -1;

/// The compression codec of a batch, from attributes bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec's value in attributes bits 0-2.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    fn from_attributes(attributes: i16) -> Result<Self, BatchError> {
        match (attributes & ATTRIBUTE_CODEC_MASK) as u8 {
            0 => Ok(Self::None),
            1 => Ok(Self::Gzip),
            2 => Ok(Self::Snappy),
            3 => Ok(Self::Lz4),
            4 => Ok(Self::Zstd),
            other => Err(BatchError::UnknownCodec(other)),
        }
    }
}

/// The header fields of one batch, as read from its first [`BATCH_HEADER_BYTES`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the length field; the whole batch is `batch_length + 12` bytes.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    /// The idempotent producer that wrote the batch, or -1.
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The producer's sequence number of the first record, or -1.
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads the header from the start of `bytes`. Checks only that the header is there and is v2; it says
    /// nothing about whether the rest of the batch is present or intact.
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::TooShort { len: bytes.len() });
        }
        let magic = bytes[OFFSET_MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        Ok(Self {
            base_offset: read_i64(bytes, OFFSET_BASE_OFFSET),
            batch_length: read_i32(bytes, OFFSET_LENGTH),
            partition_leader_epoch: read_i32(bytes, OFFSET_LEADER_EPOCH),
            magic,
            crc: read_i32(bytes, OFFSET_CRC) as u32,
            attributes: i16::from_be_bytes([bytes[OFFSET_ATTRIBUTES], bytes[OFFSET_ATTRIBUTES + 1]]),
            last_offset_delta: read_i32(bytes, OFFSET_LAST_OFFSET_DELTA),
            base_timestamp: read_i64(bytes, OFFSET_BASE_TIMESTAMP),
            max_timestamp: read_i64(bytes, OFFSET_MAX_TIMESTAMP),
            producer_id: read_i64(bytes, OFFSET_PRODUCER_ID),
            producer_epoch: i16::from_be_bytes([bytes[OFFSET_PRODUCER_EPOCH], bytes[OFFSET_PRODUCER_EPOCH + 1]]),
            base_sequence: read_i32(bytes, OFFSET_BASE_SEQUENCE),
            record_count: read_i32(bytes, OFFSET_RECORD_COUNT),
        })
    }

    /// Total bytes of the batch, header included. Only meaningful once `batch_length` has been checked.
    pub fn total_bytes(&self) -> usize {
        BATCH_LENGTH_PREFIX_BYTES + self.batch_length.max(0) as usize
    }

    /// The offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        // Saturating: the base offset is not covered by the CRC, so a flipped bit on disk must not overflow.
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }

    /// True when every record's timestamp is the broker's append time (`maxTimestamp`).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTRIBUTE_LOG_APPEND_TIME != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// The producer's sequence number of the last record. Sequences wrap from `i32::MAX` to 0, as in Kafka.
    pub fn last_sequence(&self) -> i32 {
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }
}

/// Checks one whole batch in `bytes` (which must hold exactly that batch) as a client wrote it: header,
/// length, CRC-32C, and every record (see [`validate_within`]), decompressing at most 256 MiB.
pub fn validate(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    validate_within(bytes, DECOMPRESSED_BYTES_MAX)
}

/// [`validate`] for a leader's append: the header, length and CRC-32C, then every record walked once
/// ([`walk_records`]), a compressed batch decompressed as it is read and refused once it decompresses to more
/// than `decompressed_bytes_max`.
pub fn validate_within(bytes: &[u8], decompressed_bytes_max: u64) -> Result<BatchHeader, BatchError> {
    validate_as_leader(bytes, decompressed_bytes_max, &RecordRules::default(), false).map(|v| v.header)
}

/// A batch the leader validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    pub header: BatchHeader,
    /// The records decompressed, when asked for and the batch is compressed (an uncompressed batch's
    /// records are its bytes after the header).
    pub decompressed: Option<Vec<u8>>,
}

/// The leader's check of one whole batch a client sent (Kafka's LogValidator): header, length, CRC-32C,
/// every record walked once against the header, and against `rules`. A compressed batch is decompressed as it
/// is read, in constant memory, unless `keep_records` asks for its records (to recompress them): then it is
/// decompressed whole first, still within `decompressed_bytes_max`, and the walk reads that, so the records
/// are decompressed once either way.
pub fn validate_as_leader(
    bytes: &[u8],
    decompressed_bytes_max: u64,
    rules: &RecordRules,
    keep_records: bool,
) -> Result<Validated, BatchError> {
    let header = validate_counted(bytes, CountRule::Exact)?;
    let payload = &bytes[BATCH_HEADER_BYTES..];
    let codec = header.compression()?;
    let decompress_failed = |e: io::Error| BatchError::Decompression {
        codec,
        reason: e.to_string(),
    };
    let mut decompressed = None;
    match codec {
        // Uncompressed records are walked in place: the slice is its own buffered reader.
        Compression::None => walk_records(payload, &header, decompressed_bytes_max, rules),
        // Snappy blocks state their decompressed length, checked before each is decompressed.
        Compression::Snappy => {
            let records = decompress_snappy(payload, decompressed_bytes_max)
                .map_err(|reason| BatchError::Decompression { codec, reason })?;
            let walked = walk_records(&records[..], &header, decompressed_bytes_max, rules);
            decompressed = keep_records.then_some(records);
            walked
        }
        codec if keep_records => {
            let records = decompress(codec, payload, decompressed_bytes_max)?;
            let walked = walk_records(&records[..], &header, decompressed_bytes_max, rules);
            decompressed = Some(records);
            walked
        }
        codec => walk_records(
            BufReader::new(streaming_decoder(codec, payload).map_err(decompress_failed)?),
            &header,
            decompressed_bytes_max,
            rules,
        ),
    }
    .map_err(|e| match e {
        Walk::Batch(e) => e,
        Walk::Read(e) => decompress_failed(e),
    })?;
    Ok(Validated { header, decompressed })
}

/// Why [`walk_records`] stopped: the records are wrong, or the bytes could not be read (decompression).
enum Walk {
    Batch(BatchError),
    Read(io::Error),
}

impl From<BatchError> for Walk {
    fn from(e: BatchError) -> Self {
        Walk::Batch(e)
    }
}

/// Records read one field at a time from a stream, counting what was read against a bound.
struct RecordStream<R> {
    inner: R,
    read: u64,
    read_max: u64,
}

impl<R: BufRead> RecordStream<R> {
    /// One byte; `None` at the end of the records.
    fn byte(&mut self) -> Result<Option<u8>, Walk> {
        let buf = self.inner.fill_buf().map_err(Walk::Read)?;
        let Some(&byte) = buf.first() else {
            return Ok(None);
        };
        self.inner.consume(1);
        self.count(1)?;
        Ok(Some(byte))
    }

    fn count(&mut self, bytes: u64) -> Result<(), Walk> {
        self.read += bytes;
        if self.read > self.read_max {
            return Err(Walk::Batch(BatchError::MalformedRecords(
                "the records decompress to more bytes than the broker accepts for one batch",
            )));
        }
        Ok(())
    }

    /// One byte that must be there.
    fn need_byte(&mut self) -> Result<u8, Walk> {
        Ok(self
            .byte()?
            .ok_or(BatchError::MalformedRecords("the records end inside a record"))?)
    }

    /// An unsigned varint of at most `bytes_max` bytes whose first byte is `first`.
    fn unsigned_from(&mut self, first: u8, bytes_max: usize) -> Result<u64, Walk> {
        let mut value = u64::from(first & 0x7f);
        let mut byte = first;
        for i in 1..bytes_max {
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            byte = self.need_byte()?;
            value |= u64::from(byte & 0x7f) << (7 * i);
        }
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        Err(Walk::Batch(BatchError::MalformedRecords(
            "a varint runs over its length",
        )))
    }

    /// An unsigned varint of at most `bytes_max` bytes, `None` at the end of the records. Decoded straight
    /// from the buffered bytes when it lies within them (nearly always), byte by byte when it straddles
    /// their end.
    fn unsigned(&mut self, bytes_max: usize) -> Result<Option<u64>, Walk> {
        let buf = self.inner.fill_buf().map_err(Walk::Read)?;
        if buf.is_empty() {
            return Ok(None);
        }
        if let Some((value, used)) = read_unsigned_varint(buf, bytes_max) {
            self.inner.consume(used);
            self.count(used as u64)?;
            return Ok(Some(value));
        }
        if buf.len() >= bytes_max {
            return Err(Walk::Batch(BatchError::MalformedRecords(
                "a varint runs over its length",
            )));
        }
        let first = self.need_byte()?;
        self.unsigned_from(first, bytes_max).map(Some)
    }

    /// A zigzag varint, `None` at the end of the records.
    fn varint_or_end(&mut self) -> Result<Option<i64>, Walk> {
        let Some(raw) = self.unsigned(5)? else {
            return Ok(None);
        };
        let raw = u32::try_from(raw).map_err(|_| BatchError::MalformedRecords("a varint overflows 32 bits"))?;
        Ok(Some(i64::from(((raw >> 1) as i32) ^ -((raw & 1) as i32))))
    }

    fn varint(&mut self) -> Result<i64, Walk> {
        Ok(self
            .varint_or_end()?
            .ok_or(BatchError::MalformedRecords("the records end inside a record"))?)
    }

    fn varlong(&mut self) -> Result<i64, Walk> {
        let raw = self
            .unsigned(10)?
            .ok_or(BatchError::MalformedRecords("the records end inside a record"))?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// Skips `len` bytes, which must all be there.
    fn skip(&mut self, len: u64) -> Result<(), Walk> {
        let mut left = len;
        while left > 0 {
            let buf = self.inner.fill_buf().map_err(Walk::Read)?;
            if buf.is_empty() {
                return Err(Walk::Batch(BatchError::MalformedRecords(
                    "the records end inside a record",
                )));
            }
            let step = (buf.len() as u64).min(left);
            self.inner.consume(step as usize);
            self.count(step)?;
            left -= step;
        }
        Ok(())
    }
}

/// Walks the records of a batch once, holding none of them, and checks them against `header`: exactly
/// `record_count` records, each length prefix exactly covering its fields, offset deltas 0, 1, 2, …,
/// lengths of keys, values and headers no smaller than -1 (null) and within the record, the largest
/// timestamp equal to the header's (create time), and nothing after the last record. At most
/// `read_max` bytes are read. Records that are well formed but break `rules` are collected (up to
/// [`RECORD_ERRORS_KEPT_MAX`]) and refuse the batch once the walk is over, as Kafka refuses it with every
/// record error; a malformed record stops the walk at once.
fn walk_records(records: impl BufRead, header: &BatchHeader, read_max: u64, rules: &RecordRules) -> Result<(), Walk> {
    let mut stream = RecordStream {
        inner: records,
        read: 0,
        read_max,
    };
    let count = usize::try_from(header.record_count).unwrap_or(0);
    let mut max_timestamp = i64::MIN;
    let mut rejected = Rejected::default();
    for index in 0..count {
        let invalid = |reason: String| Walk::Batch(BatchError::InvalidRecord { index, reason });
        let Some(length) = stream.varint_or_end()? else {
            return Err(Walk::Batch(BatchError::RecordCountMismatch {
                declared: header.record_count,
                found: index,
            }));
        };
        if length < RECORD_BYTES_MIN as i64 - 1 {
            return Err(Walk::Batch(BatchError::MalformedRecords(
                "record shorter than its fixed fields",
            )));
        }
        let record_end = stream.read + length as u64;
        let _attributes = stream.need_byte()?;
        let timestamp_delta = stream.varlong()?;
        let offset_delta = stream.varint()?;
        if offset_delta != index as i64 {
            return Err(invalid(format!("offset delta {offset_delta}, expected {index}")));
        }
        let timestamp = header.base_timestamp.wrapping_add(timestamp_delta);
        max_timestamp = max_timestamp.max(timestamp);
        // A length prefix, then that many bytes, all inside the record; the length is returned.
        let field = |stream: &mut RecordStream<_>, what: &str, min: i64| -> Result<i64, Walk> {
            let len = stream.varint()?;
            if len < min || stream.read + len.max(0) as u64 > record_end {
                return Err(invalid(format!("{what} length {len} does not fit the record")));
            }
            stream.skip(len.max(0) as u64)?;
            Ok(len)
        };
        let key_len = field(&mut stream, "key", -1)?;
        field(&mut stream, "value", -1)?;
        let headers = stream.varint()?;
        if headers < 0 {
            return Err(invalid(format!("{headers} headers")));
        }
        for _ in 0..headers {
            field(&mut stream, "header key", 0)?;
            field(&mut stream, "header value", -1)?;
        }
        if stream.read != record_end {
            return Err(invalid(format!(
                "its length says {length} bytes, its fields take {}",
                length as u64 + stream.read - record_end
            )));
        }
        // A log-append-time batch's records all carry its max timestamp, as Kafka reads them.
        let timestamp = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            timestamp
        };
        rejected.check(index, key_len >= 0, timestamp, header, rules);
    }
    if stream.byte()?.is_some() {
        return Err(Walk::Batch(BatchError::MalformedRecords(
            "bytes follow the last record",
        )));
    }
    if !header.is_log_append_time() && max_timestamp != header.max_timestamp {
        return Err(Walk::Batch(BatchError::InvalidRecord {
            index: count.saturating_sub(1),
            reason: format!(
                "the records' largest timestamp is {max_timestamp}, the header says {}",
                header.max_timestamp
            ),
        }));
    }
    rejected.into_result().map_err(Walk::Batch)
}

/// The records of one batch that [`RecordRules`] refused so far.
#[derive(Default)]
struct Rejected {
    errors: Vec<RecordError>,
    total: usize,
    timestamps: bool,
}

impl Rejected {
    /// Kafka's order: the key first; a record refused for it is not judged by its timestamp.
    fn check(&mut self, index: usize, has_key: bool, timestamp: i64, header: &BatchHeader, rules: &RecordRules) {
        if rules.key_required && !has_key {
            self.push(index, "Compacted topic cannot accept message without key".into(), false);
            return;
        }
        match rules.timestamps {
            TimestampRule::CreateTime {
                now_ms,
                before_max_ms,
                after_max_ms,
            } if timestamp != NO_TIMESTAMP => {
                // In i128: `now - timestamp` of any two i64s fits, and the bounds are up to i64::MAX.
                let behind = i128::from(now_ms) - i128::from(timestamp);
                if behind > i128::from(before_max_ms) || -behind > i128::from(after_max_ms) {
                    let earliest = now_ms.saturating_sub_unsigned(before_max_ms);
                    let latest = now_ms.saturating_add_unsigned(after_max_ms);
                    let message = format!(
                        "Timestamp {timestamp} of record {index} is out of range. The timestamp should be within \
                         [{earliest}, {latest}]"
                    );
                    self.push(index, message, true);
                }
            }
            TimestampRule::CreateTime { .. } | TimestampRule::LogAppendTime if header.is_log_append_time() => {
                let message = "Invalid timestamp type in record. Producer should not set timestamp type to \
                               LogAppendTime.";
                self.push(index, message.into(), true);
            }
            _ => {}
        }
    }

    fn push(&mut self, index: usize, message: String, timestamp: bool) {
        self.total += 1;
        self.timestamps |= timestamp;
        if self.errors.len() < RECORD_ERRORS_KEPT_MAX {
            self.errors.push(RecordError { index, message });
        }
    }

    fn into_result(self) -> Result<(), BatchError> {
        if self.total == 0 {
            return Ok(());
        }
        Err(BatchError::RecordsRejected {
            kind: if self.timestamps {
                RejectionKind::InvalidTimestamp
            } else {
                RejectionKind::InvalidRecord
            },
            errors: self.errors,
            total: self.total,
        })
    }
}

/// Checks one whole batch that a leader stored and a follower fetched, as [`validate`] does, except that
/// the batch may hold fewer records than its offset range: compaction removes records and keeps the range
/// (see [`check_stored`]). Uncompressed records must still be exactly as many as the header says.
pub fn validate_replicated(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    validate_counted(bytes, CountRule::AtMostRange)
}

/// How a batch's record count must relate to its offset range (`lastOffsetDelta + 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CountRule {
    /// As a client writes it: one record per offset.
    Exact,
    /// As a log may store it after compaction: at least one record, no more than the range.
    AtMostRange,
}

fn validate_counted(bytes: &[u8], rule: CountRule) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    if i64::from(header.batch_length) + BATCH_LENGTH_PREFIX_BYTES as i64 != bytes.len() as i64 {
        return Err(BatchError::LengthMismatch {
            declared: i64::from(header.batch_length),
            present: bytes.len() - BATCH_LENGTH_PREFIX_BYTES,
        });
    }
    let computed = crc32c::crc32c(&bytes[OFFSET_ATTRIBUTES..]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    // The count is checked positive first: `record_count - 1` of i32::MIN overflows.
    let count_fits = header.record_count > 0
        && match rule {
            CountRule::Exact => header.last_offset_delta == header.record_count - 1,
            CountRule::AtMostRange => header.last_offset_delta >= header.record_count - 1,
        };
    if !count_fits {
        return Err(BatchError::InconsistentCount {
            count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    let records = &bytes[BATCH_HEADER_BYTES..];
    // A client's records are walked in full by `validate_within`; a replicated batch's only counted.
    if rule == CountRule::AtMostRange && header.compression()? == Compression::None {
        let found = count_records(records)?;
        if found != header.record_count as usize {
            return Err(BatchError::RecordCountMismatch {
                declared: header.record_count,
                found,
            });
        }
    } else if records.is_empty() {
        return Err(BatchError::MalformedRecords("compressed batch has no payload"));
    }
    Ok(header)
}

/// The total size a batch at the start of `bytes` declares (its length field plus the 12 bytes before it),
/// or `None` when fewer than 12 bytes are present. Says nothing about whether that many bytes follow.
pub fn declared_total_bytes(bytes: &[u8]) -> Option<i64> {
    (bytes.len() >= BATCH_LENGTH_PREFIX_BYTES)
        .then(|| i64::from(read_i32(bytes, OFFSET_LENGTH)) + BATCH_LENGTH_PREFIX_BYTES as i64)
}

/// Checks the parts of a batch that recovery relies on: header, length within `bytes`, and CRC-32C.
/// Returns the header; `bytes` may hold more after the batch.
pub fn check_stored(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    if header.batch_length < (BATCH_HEADER_BYTES - BATCH_LENGTH_PREFIX_BYTES) as i32
        || header.total_bytes() > bytes.len()
    {
        return Err(BatchError::LengthMismatch {
            declared: i64::from(header.batch_length),
            present: bytes.len().saturating_sub(BATCH_LENGTH_PREFIX_BYTES),
        });
    }
    let end = header.total_bytes();
    let computed = crc32c::crc32c(&bytes[OFFSET_ATTRIBUTES..end]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    // Compaction keeps a batch's offset range while removing records from it, so a stored batch may hold
    // fewer records than its range covers (never more, never none).
    if header.record_count <= 0 || header.last_offset_delta < header.record_count - 1 {
        return Err(BatchError::InconsistentCount {
            count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Rewrites the fields the log owns. Neither is covered by the CRC, so the batch stays valid.
pub(crate) fn assign(bytes: &mut [u8], base_offset: i64, leader_epoch: i32) {
    bytes[OFFSET_BASE_OFFSET..OFFSET_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    bytes[OFFSET_LEADER_EPOCH..OFFSET_LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Attribute bit 3: every record's timestamp is the batch's max timestamp, the broker's append time.
const ATTRIBUTE_LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bits 0-2: the codec.
const ATTRIBUTE_CODEC_MASK: i16 = 0x07;

/// Stamps one whole, validated batch with the broker's append time, in place, as Kafka's leader does for
/// `message.timestamp.type=LogAppendTime` (`setMaxTimestamp(LOG_APPEND_TIME, now)`): the timestamp-type
/// attribute and the max timestamp, which the CRC covers, so the CRC is computed again. Records keep their
/// bytes; readers take every record's timestamp from the max timestamp.
pub(crate) fn set_log_append_time(bytes: &mut [u8], now_ms: i64) {
    let attributes = i16::from_be_bytes([bytes[OFFSET_ATTRIBUTES], bytes[OFFSET_ATTRIBUTES + 1]]);
    let attributes = attributes | ATTRIBUTE_LOG_APPEND_TIME;
    bytes[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    bytes[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    seal(bytes);
}

/// One whole, validated batch rebuilt with its records (`records`, uncompressed) compressed with `codec` at
/// `level`, as Kafka's leader rebuilds a batch whose codec differs from the topic's `compression.type`.
/// Everything else in the header stays: base offset and timestamp (so the records' deltas hold), producer
/// id, epoch and base sequence (so idempotence still matches), count and offsets; the length and CRC are
/// the new bytes'. With `log_append_time`, the batch is stamped as [`set_log_append_time`] does.
pub(crate) fn recompressed(
    original: &[u8],
    records: &[u8],
    codec: Compression,
    level: i32,
    log_append_time: Option<i64>,
) -> Vec<u8> {
    let payload = compress_at(codec, level, records);
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + payload.len());
    out.extend_from_slice(&original[..BATCH_HEADER_BYTES]);
    out.extend_from_slice(&payload);
    let attributes = i16::from_be_bytes([out[OFFSET_ATTRIBUTES], out[OFFSET_ATTRIBUTES + 1]]);
    let mut attributes = (attributes & !ATTRIBUTE_CODEC_MASK) | codec.attribute_bits();
    if let Some(now_ms) = log_append_time {
        attributes |= ATTRIBUTE_LOG_APPEND_TIME;
        out[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    }
    out[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    seal(&mut out);
    out
}

/// xerial's snappy framing, which Kafka's Java client and brokers write (and every client reads): this
/// magic, a version and a compatible version (both 1), then blocks of a 4-byte length and a raw block.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;
/// Uncompressed bytes per xerial block, as Kafka's `SnappyOutputStream` writes them.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// Kafka's lz4 frames use 64 KiB independent blocks without checksums; readers of Kafka's format expect no
/// more.
fn kafka_lz4_frame() -> lz4_flex::frame::FrameInfo {
    lz4_flex::frame::FrameInfo::new()
        .block_size(lz4_flex::frame::BlockSize::Max64KB)
        .block_mode(lz4_flex::frame::BlockMode::Independent)
}

/// Records (`body`, uncompressed) compressed with `codec` at `level` (see `LogConfig::compression_level`;
/// ignored by snappy, and by lz4, whose encoder here has one level), in the framing Kafka writes.
pub fn compress_at(codec: Compression, level: i32, body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match codec {
        Compression::None => body.to_vec(),
        Compression::Gzip => {
            let level = match u32::try_from(level) {
                Ok(level @ 1..=9) => flate2::Compression::new(level),
                // -1: zlib's default, as Java's `Deflater.DEFAULT_COMPRESSION` means.
                _ => flate2::Compression::default(),
            };
            let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), level);
            encoder.write_all(body).expect("in-memory gzip");
            encoder.finish().expect("in-memory gzip")
        }
        Compression::Snappy => {
            let mut encoder = snap::raw::Encoder::new();
            let mut out = Vec::with_capacity(XERIAL_HEADER_BYTES + body.len() / 2);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            for chunk in body.chunks(XERIAL_BLOCK_BYTES) {
                let block = encoder.compress_vec(chunk).expect("in-memory snappy");
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
        Compression::Lz4 => {
            let mut encoder =
                lz4_flex::frame::FrameEncoder::with_frame_info(kafka_lz4_frame(), Vec::with_capacity(body.len() / 2));
            encoder.write_all(body).expect("in-memory lz4");
            encoder.finish().expect("in-memory lz4")
        }
        Compression::Zstd => zstd::encode_all(body, level).expect("in-memory zstd"),
    }
}

/// Walks the length prefixes of uncompressed records and counts them; they must exactly fill `records`.
fn count_records(records: &[u8]) -> Result<usize, BatchError> {
    let mut pos = 0;
    let mut count = 0;
    while pos < records.len() {
        let (len, used) = read_varint(&records[pos..]).ok_or(BatchError::MalformedRecords("bad record length"))?;
        let len = usize::try_from(len).map_err(|_| BatchError::MalformedRecords("negative record length"))?;
        if len < RECORD_BYTES_MIN - 1 {
            return Err(BatchError::MalformedRecords("record shorter than its fixed fields"));
        }
        pos = pos
            .checked_add(used + len)
            .filter(|end| *end <= records.len())
            .ok_or(BatchError::MalformedRecords("record runs past the end of the batch"))?;
        count += 1;
    }
    Ok(count)
}

/// The offset and timestamp of one record of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordTime {
    pub offset: i64,
    pub timestamp: i64,
}

/// One record of a stored batch, decoded as far as compaction needs, with its encoding kept whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    /// False for a tombstone (a null value).
    pub has_value: bool,
    /// The record as encoded in the batch: its length prefix and body. Its offset and timestamp are deltas
    /// from the batch's base offset and base timestamp, so it can be copied into a batch with the same ones.
    pub encoded: Vec<u8>,
}

/// Decodes the offset and timestamp of every record of one whole, stored batch, decompressing it if needed.
/// Used only to answer "first offset at or after time T" inside a batch, so it is off the hot paths.
pub fn record_times(batch: &[u8]) -> Result<Vec<RecordTime>, BatchError> {
    Ok(records(batch)?
        .into_iter()
        .map(|r| RecordTime {
            offset: r.offset,
            timestamp: r.timestamp,
        })
        .collect())
}

fn signed_varint(bytes: &[u8]) -> Option<(i64, usize)> {
    read_varint(bytes).map(|(v, used)| (i64::from(v), used))
}

/// Decodes every record of one whole, stored batch (decompressing it if needed, to at most 256 MiB). Off the
/// hot paths: time search and compaction.
pub fn records(batch: &[u8]) -> Result<Vec<StoredRecord>, BatchError> {
    records_within(batch, DECOMPRESSED_BYTES_MAX)
}

/// [`records`], refusing a compressed batch that decompresses to more than `decompressed_bytes_max`.
pub fn records_within(batch: &[u8], decompressed_bytes_max: u64) -> Result<Vec<StoredRecord>, BatchError> {
    let header = check_stored(batch)?;
    let payload = &batch[BATCH_HEADER_BYTES..header.total_bytes()];
    let decompressed;
    let records = match header.compression()? {
        Compression::None => payload,
        codec => {
            decompressed = decompress(codec, payload, decompressed_bytes_max)?;
            &decompressed[..]
        }
    };
    let malformed = || BatchError::MalformedRecords("record fields do not decode");
    // Never sized by the header's count alone: a stored count is only as good as the batch that carried it.
    // Every record takes at least its fixed fields, so the bytes present bound how many there can be.
    let mut out = Vec::with_capacity((header.record_count as usize).min(records.len() / RECORD_BYTES_MIN));
    let mut pos = 0;
    while pos < records.len() && out.len() < header.record_count as usize {
        let (len, used) = read_varint(&records[pos..]).ok_or_else(malformed)?;
        let body_start = pos + used;
        let body_end = usize::try_from(len)
            .ok()
            .and_then(|len| body_start.checked_add(len))
            .filter(|end| *end <= records.len())
            .ok_or_else(malformed)?;
        let body = &records[body_start..body_end];
        // attributes (1 byte), timestamp delta (varlong), offset delta, key, value (varint lengths), headers
        let mut at = 1;
        let mut field = |read: fn(&[u8]) -> Option<(i64, usize)>| -> Result<i64, BatchError> {
            let (value, used) = body.get(at..).and_then(read).ok_or_else(malformed)?;
            at += used;
            Ok(value)
        };
        let timestamp_delta = field(read_varlong)?;
        let offset_delta = field(signed_varint)?;
        let key_len = field(signed_varint)?;
        let key = match usize::try_from(key_len) {
            Ok(len) => {
                let key = body.get(at..at + len).ok_or_else(malformed)?.to_vec();
                at += len;
                Some(key)
            }
            Err(_) => None,
        };
        let (value_len, _) = body.get(at..).and_then(signed_varint).ok_or_else(malformed)?;
        let timestamp = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(timestamp_delta)
        };
        // The base offset is not covered by the CRC: a stored one may be anything.
        let offset = header
            .base_offset
            .checked_add(offset_delta)
            .ok_or(BatchError::MalformedRecords("a record's offset overflows"))?;
        out.push(StoredRecord {
            offset,
            timestamp,
            key,
            has_value: value_len >= 0,
            encoded: records[pos..body_end].to_vec(),
        });
        pos = body_end;
    }
    Ok(out)
}

/// A batch holding only `kept` of the records of the batch `original` (uncompressed, same base offset,
/// base timestamp and offset range, so the kept records' deltas stay right), as compaction writes it.
pub fn rebuild(original: &BatchHeader, original_bytes: &[u8], kept: &[StoredRecord]) -> Vec<u8> {
    let mut out = original_bytes[..BATCH_HEADER_BYTES].to_vec();
    for record in kept {
        out.extend_from_slice(&record.encoded);
    }
    let attributes = original.attributes & !ATTRIBUTE_CODEC_MASK; // uncompressed now
    out[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    out[OFFSET_RECORD_COUNT..OFFSET_RECORD_COUNT + 4].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    seal(&mut out);
    out
}

/// Makes the batch length field and the CRC-32C of the one whole batch in `bytes` (at least a header) agree
/// with its bytes.
fn seal(bytes: &mut [u8]) {
    let length = (bytes.len() - BATCH_LENGTH_PREFIX_BYTES) as i32;
    bytes[OFFSET_LENGTH..OFFSET_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[OFFSET_ATTRIBUTES..]);
    bytes[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The records section `payload` of a batch compressed with `codec`, decompressed whole; refused once it
/// decompresses to more than `decompressed_bytes_max`, for every codec alike (never cut short at the bound).
pub fn decompress(codec: Compression, payload: &[u8], decompressed_bytes_max: u64) -> Result<Vec<u8>, BatchError> {
    let failed = |reason: String| BatchError::Decompression { codec, reason };
    if codec == Compression::Snappy {
        return decompress_snappy(payload, decompressed_bytes_max).map_err(failed);
    }
    let mut out = Vec::new();
    // One byte past the bound, to tell a payload that fills it exactly from one that runs over it.
    streaming_decoder(codec, payload)
        .and_then(|decoder| {
            decoder
                .take(decompressed_bytes_max.saturating_add(1))
                .read_to_end(&mut out)
        })
        .map_err(|e| failed(e.to_string()))?;
    if out.len() as u64 > decompressed_bytes_max {
        return Err(failed(format!(
            "the records decompress to more than {decompressed_bytes_max} bytes"
        )));
    }
    Ok(out)
}

/// A reader of the decompressed records of `payload`, for every codec but snappy (whose blocks state their
/// length and are decompressed whole, see [`decompress_snappy`]); the payload itself for none.
fn streaming_decoder(codec: Compression, payload: &[u8]) -> io::Result<Box<dyn Read + '_>> {
    Ok(match codec {
        Compression::None => Box::new(payload),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(payload)),
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(payload)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(payload)?),
        Compression::Snappy => return Err(io::Error::other("snappy is not decompressed as a stream")),
    })
}

/// Kafka's Java client frames snappy the way xerial's `SnappyOutputStream` does (a 16-byte header, then blocks
/// of a 4-byte length and a raw snappy block); librdkafka may send one raw block. Both are accepted.
fn decompress_snappy(payload: &[u8], decompressed_bytes_max: u64) -> Result<Vec<u8>, String> {
    let mut decoder = snap::raw::Decoder::new();
    if !payload.starts_with(XERIAL_MAGIC) {
        // The block states its own decompressed length; check it before anything is allocated for it.
        let block_len = snap::raw::decompress_len(payload).map_err(|e| e.to_string())?;
        if block_len as u64 > decompressed_bytes_max {
            return Err(format!("the snappy block claims {block_len} bytes decompressed"));
        }
        return decoder.decompress_vec(payload).map_err(|e| e.to_string());
    }
    let mut out = Vec::new();
    let mut pos = XERIAL_HEADER_BYTES;
    while pos < payload.len() {
        let len_bytes = payload.get(pos..pos + 4).ok_or("truncated xerial block length")?;
        let len = u32::from_be_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        let block = payload.get(pos + 4..pos + 4 + len).ok_or("truncated xerial block")?;
        let block_len = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
        if (out.len() + block_len) as u64 > decompressed_bytes_max {
            return Err("decompressed batch is too large".into());
        }
        let start = out.len();
        out.resize(start + block_len, 0);
        decoder
            .decompress(block, &mut out[start..])
            .map_err(|e| e.to_string())?;
        pos += 4 + len;
    }
    Ok(out)
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// A zigzag varint (at most 5 bytes), returning the value and the bytes used.
fn read_varint(bytes: &[u8]) -> Option<(i32, usize)> {
    let (raw, used) = read_unsigned_varint(bytes, 5)?;
    let raw = u32::try_from(raw).ok()?;
    Some((((raw >> 1) as i32) ^ -((raw & 1) as i32), used))
}

/// A zigzag varlong (at most 10 bytes), returning the value and the bytes used.
fn read_varlong(bytes: &[u8]) -> Option<(i64, usize)> {
    let (raw, used) = read_unsigned_varint(bytes, 10)?;
    Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), used))
}

fn read_unsigned_varint(bytes: &[u8], bytes_max: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().take(bytes_max).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Builds v2 batches the way a client would. Used by tests and benchmarks; never by the log itself.
pub mod build {
    use super::*;

    /// One record to encode.
    #[derive(Debug, Clone, Default)]
    pub struct Record<'a> {
        pub key: Option<&'a [u8]>,
        pub value: Option<&'a [u8]>,
        pub timestamp: i64,
        pub headers: &'a [(&'a str, &'a [u8])],
    }

    /// Sets the base offset and partition leader epoch of an encoded batch, as a leader's log does when it
    /// appends it: for batches handed to a follower's [`crate::Log::append_replicated`] in tests. Neither
    /// field is covered by the CRC.
    pub fn assign_offsets(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
        assign(batch, base_offset, leader_epoch);
    }

    /// Encodes an uncompressed batch with base offset 0 (the log assigns the real one).
    pub fn batch(records: &[Record<'_>]) -> Vec<u8> {
        encode(records, Compression::None)
    }

    /// Encodes an uncompressed batch of an idempotent producer: `producer_id`, `producer_epoch`, and the
    /// sequence of its first record.
    pub fn idempotent(records: &[Record<'_>], producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Vec<u8> {
        let mut out = batch(records);
        out[OFFSET_PRODUCER_ID..OFFSET_PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
        out[OFFSET_PRODUCER_EPOCH..OFFSET_PRODUCER_EPOCH + 2].copy_from_slice(&producer_epoch.to_be_bytes());
        out[OFFSET_BASE_SEQUENCE..OFFSET_BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
        seal(&mut out);
        out
    }

    /// Makes the length field and the CRC-32C of `batch` (one whole batch, at least a header) agree with its
    /// bytes, whatever they are: a batch edited by a test, or arbitrary bytes a fuzz target wants past those
    /// two checks.
    pub fn seal(batch: &mut [u8]) {
        assert!(batch.len() >= BATCH_HEADER_BYTES, "a batch is at least a header");
        super::seal(batch);
    }

    /// Encodes a batch whose records are compressed with `codec`.
    pub fn encode(records: &[Record<'_>], codec: Compression) -> Vec<u8> {
        assert!(!records.is_empty(), "a batch holds at least one record");
        let base_timestamp = records.iter().map(|r| r.timestamp).min().expect("non-empty");
        let max_timestamp = records.iter().map(|r| r.timestamp).max().expect("non-empty");
        let mut body = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let mut r = Vec::new();
            r.push(0u8);
            put_varlong(&mut r, record.timestamp - base_timestamp);
            put_varlong(&mut r, i as i64);
            put_bytes(&mut r, record.key);
            put_bytes(&mut r, record.value);
            put_varlong(&mut r, record.headers.len() as i64);
            for (key, value) in record.headers {
                put_bytes(&mut r, Some(key.as_bytes()));
                put_bytes(&mut r, Some(value));
            }
            put_varlong(&mut body, r.len() as i64);
            body.extend_from_slice(&r);
        }
        let payload = compress(codec, &body);
        let codec_bits = codec.attribute_bits();
        let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + payload.len());
        out.extend_from_slice(&0i64.to_be_bytes());
        out.extend_from_slice(&((BATCH_HEADER_BYTES - 12 + payload.len()) as i32).to_be_bytes());
        out.extend_from_slice(&(-1i32).to_be_bytes());
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&codec_bits.to_be_bytes());
        out.extend_from_slice(&(records.len() as i32 - 1).to_be_bytes());
        out.extend_from_slice(&base_timestamp.to_be_bytes());
        out.extend_from_slice(&max_timestamp.to_be_bytes());
        out.extend_from_slice(&(-1i64).to_be_bytes());
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out.extend_from_slice(&(-1i32).to_be_bytes());
        out.extend_from_slice(&(records.len() as i32).to_be_bytes());
        out.extend_from_slice(&payload);
        seal(&mut out);
        out
    }

    pub fn compress(codec: Compression, body: &[u8]) -> Vec<u8> {
        use std::io::Write;
        match codec {
            Compression::None => body.to_vec(),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(body).expect("in-memory gzip");
                encoder.finish().expect("in-memory gzip")
            }
            Compression::Snappy => snap::raw::Encoder::new().compress_vec(body).expect("in-memory snappy"),
            Compression::Lz4 => {
                let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
                encoder.write_all(body).expect("in-memory lz4");
                encoder.finish().expect("in-memory lz4")
            }
            Compression::Zstd => zstd::encode_all(body, 1).expect("in-memory zstd"),
        }
    }

    fn put_varlong(out: &mut Vec<u8>, value: i64) {
        let mut raw = ((value << 1) ^ (value >> 63)) as u64;
        while raw >= 0x80 {
            out.push((raw as u8) | 0x80);
            raw >>= 7;
        }
        out.push(raw as u8);
    }

    fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
        match bytes {
            None => put_varlong(out, -1),
            Some(bytes) => {
                put_varlong(out, bytes.len() as i64);
                out.extend_from_slice(bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::build::{Record, encode};
    use super::*;

    fn records(n: usize, first_timestamp: i64) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("value-{i}-{first_timestamp}").into_bytes())
            .collect()
    }

    fn batch_of(values: &[Vec<u8>], first_timestamp: i64, codec: Compression) -> Vec<u8> {
        let recs: Vec<Record<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                key: Some(b"k"),
                value: Some(v),
                timestamp: first_timestamp + i as i64,
                headers: &[],
            })
            .collect();
        encode(&recs, codec)
    }

    #[test]
    fn a_well_formed_batch_validates_for_every_codec() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = batch_of(&records(10, 1000), 1000, codec);
            let header = validate(&batch).unwrap();
            assert_eq!(header.record_count, 10);
            assert_eq!(header.max_timestamp, 1009);
            assert_eq!(header.compression().unwrap(), codec);
            let times = record_times(&batch).unwrap();
            assert_eq!(times.len(), 10, "{codec:?}");
            assert_eq!(
                times[3],
                RecordTime {
                    offset: 3,
                    timestamp: 1003
                }
            );
        }
    }

    #[test]
    fn assigning_offsets_keeps_the_crc_valid() {
        let mut batch = batch_of(&records(3, 5), 5, Compression::None);
        assign(&mut batch, 1_000_000, 7);
        let header = validate(&batch).unwrap();
        assert_eq!(header.base_offset, 1_000_000);
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.last_offset(), 1_000_002);
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let batch = batch_of(&records(3, 5), 5, Compression::None);
        for at in OFFSET_ATTRIBUTES..batch.len() {
            let mut bad = batch.clone();
            bad[at] ^= 0x01;
            assert!(validate(&bad).is_err(), "flip at {at} went unnoticed");
        }
    }

    #[test]
    fn lengths_and_counts_must_agree_with_the_bytes() {
        let batch = batch_of(&records(3, 5), 5, Compression::None);
        assert_eq!(validate(&batch[..40]), Err(BatchError::TooShort { len: 40 }));
        assert!(matches!(
            validate(&batch[..batch.len() - 1]),
            Err(BatchError::LengthMismatch { .. })
        ));
        let mut longer = batch.clone();
        longer.push(0);
        assert!(matches!(validate(&longer), Err(BatchError::LengthMismatch { .. })));

        // A header that claims more records than are present, with a CRC recomputed to match.
        let mut lying = batch.clone();
        lying[OFFSET_RECORD_COUNT..OFFSET_RECORD_COUNT + 4].copy_from_slice(&1000i32.to_be_bytes());
        lying[OFFSET_LAST_OFFSET_DELTA..OFFSET_LAST_OFFSET_DELTA + 4].copy_from_slice(&999i32.to_be_bytes());
        let crc = crc32c::crc32c(&lying[OFFSET_ATTRIBUTES..]);
        lying[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate(&lying),
            Err(BatchError::RecordCountMismatch {
                declared: 1000,
                found: 3
            })
        );

        let mut v1 = batch.clone();
        v1[OFFSET_MAGIC] = 1;
        assert_eq!(validate(&v1), Err(BatchError::UnsupportedMagic(1)));
    }

    #[test]
    fn a_replicated_batch_may_hold_fewer_records_than_offsets() {
        // As compaction leaves a batch: two of its three offsets removed, the range kept.
        let batch = batch_of(&records(3, 5), 5, Compression::None);
        let header = validate(&batch).unwrap();
        let kept = super::records(&batch).unwrap().split_off(2);
        let compacted = rebuild(&header, &batch, &kept);
        assert!(matches!(
            validate(&compacted),
            Err(BatchError::InconsistentCount { .. })
        ));
        let stored = validate_replicated(&compacted).unwrap();
        assert_eq!((stored.record_count, stored.last_offset_delta), (1, 2));
        // Never more records than offsets, never none, and the records present must be as many as declared.
        let mut more = batch.clone();
        more[OFFSET_LAST_OFFSET_DELTA..OFFSET_LAST_OFFSET_DELTA + 4].copy_from_slice(&1i32.to_be_bytes());
        let crc = crc32c::crc32c(&more[OFFSET_ATTRIBUTES..]);
        more[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_replicated(&more),
            Err(BatchError::InconsistentCount { .. })
        ));
        let mut fewer_present = batch.clone();
        fewer_present[OFFSET_LAST_OFFSET_DELTA..OFFSET_LAST_OFFSET_DELTA + 4].copy_from_slice(&9i32.to_be_bytes());
        fewer_present[OFFSET_RECORD_COUNT..OFFSET_RECORD_COUNT + 4].copy_from_slice(&4i32.to_be_bytes());
        let crc = crc32c::crc32c(&fewer_present[OFFSET_ATTRIBUTES..]);
        fewer_present[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate_replicated(&fewer_present),
            Err(BatchError::RecordCountMismatch { declared: 4, found: 3 })
        );
        assert_eq!(declared_total_bytes(&batch[..11]), None);
        assert_eq!(declared_total_bytes(&batch[..12]), Some(batch.len() as i64));
    }

    #[test]
    fn varints_round_trip_at_their_edges() {
        for value in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            let mut raw = ((value << 1) ^ (value >> 63)) as u64;
            while raw >= 0x80 {
                out.push((raw as u8) | 0x80);
                raw >>= 7;
            }
            out.push(raw as u8);
            assert_eq!(read_varlong(&out), Some((value, out.len())));
            if let Ok(v) = i32::try_from(value) {
                assert_eq!(read_varint(&out), Some((v, out.len())));
            }
        }
        assert_eq!(read_varint(&[0x80, 0x80]), None, "truncated varint");
    }

    /// Makes `batch` claim `count` records over as many offsets, with a CRC that agrees: a header that lies
    /// but passes every check a stored batch gets.
    fn claim(batch: &mut [u8], count: i32) {
        batch[OFFSET_RECORD_COUNT..OFFSET_RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
        batch[OFFSET_LAST_OFFSET_DELTA..OFFSET_LAST_OFFSET_DELTA + 4].copy_from_slice(&(count - 1).to_be_bytes());
        let crc = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
        batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn a_stored_count_of_i32_max_allocates_nothing_for_it() {
        // The cleaner once asked for ~150 GB here (`Vec::with_capacity(record_count)`) and the process aborted.
        for codec in [Compression::None, Compression::Gzip] {
            let mut batch = batch_of(&records(3, 1000), 1000, codec);
            claim(&mut batch, i32::MAX);
            let read = super::records(&batch).unwrap();
            assert_eq!(read.len(), 3, "{codec:?}: the records present, not the count claimed");
        }
    }

    #[test]
    fn a_record_count_of_i32_min_is_refused_not_overflowed() {
        // Found by the stored_batch fuzz target: `record_count - 1` overflowed before the count was checked
        // positive, a panic in debug builds on a client's batch.
        let mut batch = batch_of(&records(1, 1000), 1000, Compression::None);
        batch[OFFSET_RECORD_COUNT..OFFSET_RECORD_COUNT + 4].copy_from_slice(&i32::MIN.to_be_bytes());
        super::build::seal(&mut batch);
        let refused = Err(BatchError::InconsistentCount {
            count: i32::MIN,
            last_offset_delta: 0,
        });
        assert_eq!(validate(&batch), refused);
        assert_eq!(validate_replicated(&batch), refused);
        assert_eq!(check_stored(&batch), refused);
    }

    #[test]
    fn a_stored_base_offset_near_i64_max_is_refused_not_overflowed() {
        // The base offset is not covered by the CRC, and a record's offset (base offset + offset delta) once
        // overflowed: a panic in debug builds, a negative offset in release ones.
        let mut batch = batch_of(&records(3, 1000), 1000, Compression::None);
        assign(&mut batch, i64::MAX - 1, 0);
        assert_eq!(
            super::records(&batch),
            Err(BatchError::MalformedRecords("a record's offset overflows"))
        );
        assign(&mut batch, i64::MAX - 2, 0);
        assert_eq!(super::records(&batch).unwrap()[2].offset, i64::MAX);
    }

    #[test]
    fn a_raw_snappy_block_claiming_gigabytes_is_refused_before_allocating() {
        let mut batch = batch_of(&records(1, 1000), 1000, Compression::Snappy);
        // A raw snappy block starts with its decompressed length as a varint: claim 4 GiB - 1.
        let mut payload = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
        payload.extend_from_slice(&[0u8; 16]);
        batch.truncate(BATCH_HEADER_BYTES);
        batch.extend_from_slice(&payload);
        let length = (batch.len() - BATCH_LENGTH_PREFIX_BYTES) as i32;
        batch[OFFSET_LENGTH..OFFSET_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
        claim(&mut batch, 1);
        assert!(matches!(super::records(&batch), Err(BatchError::Decompression { .. })));
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// `template`'s header over `records` (uncompressed record bytes) compressed with `codec`, claiming
    /// `count` records, with length and CRC that agree: what a client that lies carefully sends.
    fn crafted(codec: Compression, records: &[u8], count: i32) -> Vec<u8> {
        let mut batch = batch_of(&[b"template".to_vec()], 1000, codec);
        batch.truncate(BATCH_HEADER_BYTES);
        batch.extend_from_slice(&super::build::compress(codec, records));
        let length = (batch.len() - BATCH_LENGTH_PREFIX_BYTES) as i32;
        batch[OFFSET_LENGTH..OFFSET_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
        claim(&mut batch, count);
        batch
    }

    /// The uncompressed record bytes of a batch of `n` records (timestamps 1000, 1001, …).
    fn record_bytes(n: usize) -> Vec<u8> {
        batch_of(&records(n, 1000), 1000, Compression::None)[BATCH_HEADER_BYTES..].to_vec()
    }

    #[test]
    fn a_count_the_records_do_not_fill_is_refused_for_every_codec() {
        for codec in CODECS {
            let mut batch = batch_of(&records(3, 1000), 1000, codec);
            claim(&mut batch, i32::MAX);
            assert!(
                matches!(validate(&batch), Err(BatchError::RecordCountMismatch { found: 3, .. })),
                "{codec:?}: {:?}",
                validate(&batch)
            );
        }
    }

    #[test]
    fn a_payload_that_does_not_decompress_is_refused() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut batch = batch_of(&records(1, 1000), 1000, codec);
            batch.truncate(BATCH_HEADER_BYTES);
            batch.extend_from_slice(b"this was never compressed by anything at all");
            let length = (batch.len() - BATCH_LENGTH_PREFIX_BYTES) as i32;
            batch[OFFSET_LENGTH..OFFSET_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
            claim(&mut batch, 1);
            assert!(validate(&batch).is_err(), "{codec:?} garbage was accepted");
        }
    }

    #[test]
    fn decompression_stops_at_the_bound() {
        // One valid record whose value is 4 MiB of zeros: a few KiB compressed.
        let zeros = vec![0u8; 4 << 20];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = batch_of(std::slice::from_ref(&zeros), 1000, codec);
            assert!(batch.len() < 1 << 20, "{codec:?} compresses zeros");
            assert!(validate_within(&batch, 1 << 20).is_err(), "{codec:?}: past the bound");
            assert!(validate_within(&batch, 8 << 20).is_ok(), "{codec:?}: within it");
        }
    }

    #[test]
    fn decompressing_past_the_bound_is_an_error_not_a_shorter_batch() {
        // Gzip, lz4 and zstd once stopped reading at the bound and returned what they had, so a batch larger
        // than it decoded as a batch of fewer records; snappy refused it. Now every codec refuses.
        let zeros = vec![0u8; 1 << 20];
        for codec in CODECS {
            let payload = super::build::compress(codec, &zeros);
            let bound = zeros.len() as u64;
            assert_eq!(
                decompress(codec, &payload, bound).unwrap(),
                zeros,
                "{codec:?}: exactly the bound"
            );
            assert!(
                matches!(
                    decompress(codec, &payload, bound - 1),
                    Err(BatchError::Decompression { .. })
                ),
                "{codec:?}: one byte past the bound"
            );
        }
        let batch = batch_of(std::slice::from_ref(&zeros), 1000, Compression::Zstd);
        assert!(records_within(&batch, 1 << 19).is_err());
        assert_eq!(records_within(&batch, 2 << 20).unwrap().len(), 1);
    }

    #[test]
    fn offset_deltas_count_from_zero() {
        let one = record_bytes(1);
        let twice = [one.clone(), one].concat();
        for codec in CODECS {
            let batch = crafted(codec, &twice, 2);
            assert!(
                matches!(validate(&batch), Err(BatchError::InvalidRecord { index: 1, .. })),
                "{codec:?}: {:?}",
                validate(&batch)
            );
        }
    }

    #[test]
    fn nothing_may_follow_the_last_record() {
        for codec in CODECS {
            let batch = crafted(codec, &record_bytes(2), 1);
            assert!(
                validate(&batch).is_err(),
                "{codec:?}: a second record past the count was accepted"
            );
            let batch = crafted(codec, &[record_bytes(1), vec![0]].concat(), 1);
            assert!(validate(&batch).is_err(), "{codec:?}: a trailing byte was accepted");
        }
    }

    #[test]
    fn the_header_max_timestamp_is_the_records() {
        for codec in CODECS {
            let mut batch = batch_of(&records(3, 1000), 1000, codec);
            batch[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8].copy_from_slice(&5000i64.to_be_bytes());
            claim(&mut batch, 3);
            assert!(
                matches!(validate(&batch), Err(BatchError::InvalidRecord { .. })),
                "{codec:?}: {:?}",
                validate(&batch)
            );
        }
    }

    fn leader(batch: &[u8], rules: RecordRules) -> Result<BatchHeader, BatchError> {
        validate_as_leader(batch, DECOMPRESSED_BYTES_MAX, &rules, false).map(|v| v.header)
    }

    fn rejected(result: Result<BatchHeader, BatchError>) -> (RejectionKind, Vec<usize>, usize) {
        match result {
            Err(BatchError::RecordsRejected { kind, errors, total }) => {
                (kind, errors.iter().map(|e| e.index).collect(), total)
            }
            other => panic!("expected records rejected, got {other:?}"),
        }
    }

    #[test]
    fn a_compacted_topic_refuses_records_without_a_key_naming_each() {
        let values = [b"a".as_slice(), b"b", b"c", b"d"];
        let recs: Vec<Record<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                key: (i % 2 == 0).then_some(b"k".as_slice()),
                value: Some(v),
                timestamp: 1000,
                headers: &[],
            })
            .collect();
        let compacted = RecordRules {
            key_required: true,
            ..RecordRules::default()
        };
        for codec in CODECS {
            let batch = encode(&recs, codec);
            assert!(leader(&batch, RecordRules::default()).is_ok(), "{codec:?}");
            let (kind, indexes, total) = rejected(leader(&batch, compacted));
            assert_eq!(
                (kind, indexes, total),
                (RejectionKind::InvalidRecord, vec![1, 3], 2),
                "{codec:?}"
            );
        }
        let message = leader(&encode(&recs, Compression::None), compacted)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("One or more records have been rejected due to 2 record errors in total"),
            "{message}"
        );
        assert!(message.contains("batchIndex=1"), "{message}");
        // An empty key is a key.
        let empty_key = encode(
            &[Record {
                key: Some(b""),
                value: Some(b"v"),
                timestamp: 1000,
                headers: &[],
            }],
            Compression::None,
        );
        assert!(leader(&empty_key, compacted).is_ok());
    }

    #[test]
    fn create_time_outside_the_window_is_an_invalid_timestamp() {
        let now_ms = 1_800_000_000_000;
        let rules = |before_max_ms, after_max_ms| RecordRules {
            key_required: false,
            timestamps: TimestampRule::CreateTime {
                now_ms,
                before_max_ms,
                after_max_ms,
            },
        };
        let at = |timestamps: &[i64]| {
            let recs: Vec<Record<'_>> = timestamps
                .iter()
                .map(|&timestamp| Record {
                    key: Some(b"k"),
                    value: Some(b"v"),
                    timestamp,
                    headers: &[],
                })
                .collect();
            encode(&recs, Compression::Lz4)
        };
        let hour = 3_600_000;
        // Kafka 4's defaults: any age, at most an hour ahead.
        assert!(leader(&at(&[0, now_ms, now_ms + hour]), rules(i64::MAX as u64, hour as u64)).is_ok());
        let (kind, indexes, _) = rejected(leader(
            &at(&[now_ms, now_ms + hour + 1]),
            rules(i64::MAX as u64, hour as u64),
        ));
        assert_eq!((kind, indexes), (RejectionKind::InvalidTimestamp, vec![1]));
        let (_, indexes, _) = rejected(leader(&at(&[now_ms - 1001, now_ms - 1000, now_ms]), rules(1000, 0)));
        assert_eq!(indexes, vec![0]);
        let message = leader(&at(&[now_ms - 1001]), rules(1000, 0)).unwrap_err().to_string();
        assert_eq!(
            message,
            "One or more records have been rejected due to invalid timestamp"
        );
        // -1 is "no timestamp", never out of range; the extremes of i64 do not overflow the arithmetic.
        assert!(leader(&at(&[-1]), rules(0, 0)).is_ok());
        assert!(leader(&at(&[i64::MIN + 1]), rules(0, 0)).is_err());
        assert!(leader(&at(&[i64::MAX]), rules(0, 0)).is_err());
        assert!(leader(&at(&[i64::MIN + 1]), rules(i64::MAX as u64, 0)).is_err());
        assert!(leader(&at(&[i64::MAX]), rules(0, i64::MAX as u64)).is_ok());
    }

    #[test]
    fn a_producer_may_not_claim_log_append_time_on_a_log_append_time_topic() {
        let mut batch = batch_of(&records(2, 1000), 1000, Compression::None);
        set_log_append_time(&mut batch, 5000);
        let header = validate(&batch).unwrap();
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, 5000);
        let lat = RecordRules {
            key_required: false,
            timestamps: TimestampRule::LogAppendTime,
        };
        let (kind, indexes, _) = rejected(leader(&batch, lat));
        assert_eq!((kind, indexes), (RejectionKind::InvalidTimestamp, vec![0, 1]));
    }

    #[test]
    fn recompressing_keeps_every_record_and_the_producer_fields() {
        let recs = records(50, 1000);
        for from in CODECS {
            for to in CODECS {
                let mut original = batch_of(&recs, 1000, from);
                original[OFFSET_PRODUCER_ID..OFFSET_PRODUCER_ID + 8].copy_from_slice(&7i64.to_be_bytes());
                original[OFFSET_BASE_SEQUENCE..OFFSET_BASE_SEQUENCE + 4].copy_from_slice(&42i32.to_be_bytes());
                super::build::seal(&mut original);
                let validated =
                    validate_as_leader(&original, DECOMPRESSED_BYTES_MAX, &RecordRules::default(), true).unwrap();
                let body = match from {
                    Compression::None => original[BATCH_HEADER_BYTES..].to_vec(),
                    _ => validated.decompressed.clone().expect("kept when asked"),
                };
                let rebuilt = recompressed(&original, &body, to, 3, None);
                let header = validate(&rebuilt).unwrap_or_else(|e| panic!("{from:?} -> {to:?}: {e}"));
                assert_eq!(header.compression().unwrap(), to);
                let before = validated.header;
                assert_eq!(
                    (
                        header.producer_id,
                        header.base_sequence,
                        header.record_count,
                        header.base_timestamp
                    ),
                    (
                        before.producer_id,
                        before.base_sequence,
                        before.record_count,
                        before.base_timestamp
                    )
                );
                let keys_values = |b: &[u8]| -> Vec<(i64, i64, Option<Vec<u8>>)> {
                    super::records(b)
                        .unwrap()
                        .into_iter()
                        .map(|r| (r.offset, r.timestamp, r.key))
                        .collect()
                };
                assert_eq!(keys_values(&rebuilt), keys_values(&original), "{from:?} -> {to:?}");
            }
        }
        // Stamped while recompressed: the append time is every record's timestamp.
        let original = batch_of(&recs, 1000, Compression::Gzip);
        let body = decompress(
            Compression::Gzip,
            &original[BATCH_HEADER_BYTES..],
            DECOMPRESSED_BYTES_MAX,
        )
        .unwrap();
        let rebuilt = recompressed(&original, &body, Compression::Zstd, 3, Some(99_000));
        let header = validate(&rebuilt).unwrap();
        assert!(header.is_log_append_time());
        assert!(super::records(&rebuilt).unwrap().iter().all(|r| r.timestamp == 99_000));
    }

    #[test]
    fn snappy_is_written_in_xerial_framing_as_kafka_writes_it() {
        let body = record_bytes(5000);
        assert!(body.len() > 2 * XERIAL_BLOCK_BYTES, "several blocks");
        let framed = compress_at(Compression::Snappy, 0, &body);
        assert!(framed.starts_with(XERIAL_MAGIC));
        assert_eq!(
            decompress(Compression::Snappy, &framed, DECOMPRESSED_BYTES_MAX).unwrap(),
            body
        );
    }

    #[test]
    fn every_level_kafka_allows_compresses() {
        let body = record_bytes(500);
        for level in [-1, 1, 9] {
            let out = compress_at(Compression::Gzip, level, &body);
            assert_eq!(
                decompress(Compression::Gzip, &out, DECOMPRESSED_BYTES_MAX).unwrap(),
                body
            );
        }
        for level in [-131_072, -1, 3, 22] {
            let out = compress_at(Compression::Zstd, level, &body);
            assert_eq!(
                decompress(Compression::Zstd, &out, DECOMPRESSED_BYTES_MAX).unwrap(),
                body
            );
        }
        let out = compress_at(Compression::Lz4, 17, &body);
        assert_eq!(
            decompress(Compression::Lz4, &out, DECOMPRESSED_BYTES_MAX).unwrap(),
            body
        );
    }

    #[test]
    fn a_key_longer_than_its_record_is_refused() {
        // One record: length 10, attributes, timestamp delta 0, offset delta 0, then a key of 100 bytes.
        let mut lying = vec![20, 0, 0, 0, 200, 1];
        lying.extend_from_slice(&[b'k'; 100]);
        for codec in CODECS {
            let batch = crafted(codec, &lying, 1);
            assert!(validate(&batch).is_err(), "{codec:?}");
        }
    }
}
