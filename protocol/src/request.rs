//! Decoding a request frame: header first, checked against what the broker supports, then the body.
//!
//! The order matters. The API key and version are read before anything else so that an unsupported version
//! can be answered (ApiVersions) or logged precisely (everything else), and the body is only decoded with a
//! version the broker has promised to handle.

use std::ops::RangeInclusive;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use thiserror::Error;

/// Bytes every request starts with: API key, API version, correlation id.
const FIXED_HEADER_BYTES: usize = 2 + 2 + 4;

/// A decoded request.
#[derive(Debug, Clone)]
pub struct Request {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: RequestKind,
}

impl Request {
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }

    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }
}

/// Why a frame is not a request the broker will process.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RequestError {
    #[error("frame of {len} bytes is too short for a request header")]
    TooShort { len: usize },
    #[error("API key {api_key} is not supported (correlation id {correlation_id})")]
    UnsupportedApi { api_key: i16, correlation_id: i32 },
    #[error("{api_key:?} version {version} is not supported (correlation id {correlation_id})")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api_key:?} v{version} request (correlation id {correlation_id}): {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        reason: String,
    },
}

/// Decodes one request frame. `supported` gives the version range the broker handles for an API, or `None`
/// when it does not handle the API at all.
pub fn decode(
    mut frame: Bytes,
    supported: impl Fn(ApiKey) -> Option<RangeInclusive<i16>>,
) -> Result<Request, RequestError> {
    if frame.len() < FIXED_HEADER_BYTES {
        return Err(RequestError::TooShort { len: frame.len() });
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let unsupported_api = RequestError::UnsupportedApi {
        api_key: raw_key,
        correlation_id,
    };
    let api_key = ApiKey::try_from(raw_key).map_err(|_| unsupported_api.clone())?;
    let range = supported(api_key).ok_or(unsupported_api)?;
    if !range.contains(&version) {
        return Err(RequestError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }
    let malformed = |reason: String| RequestError::Malformed {
        api_key,
        version,
        correlation_id,
        reason,
    };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| malformed(format!("header: {e}")))?;
    let body = RequestKind::decode(api_key, &mut frame, version).map_err(|e| malformed(format!("body: {e}")))?;
    // Bytes after the body are ignored, as Kafka ignores them: librdkafka 2.x sends some (Metadata v12).
    Ok(Request { api_key, header, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{MetadataRequest, RequestHeader};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn supported(key: ApiKey) -> Option<RangeInclusive<i16>> {
        (key == ApiKey::Metadata).then_some(0..=12)
    }

    fn metadata_frame(version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Metadata as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        header
            .encode(&mut buf, ApiKey::Metadata.request_header_version(version))
            .unwrap();
        MetadataRequest::default().encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn a_supported_request_decodes() {
        for version in [0, 9, 12] {
            let request = decode(metadata_frame(version), supported).unwrap();
            assert_eq!(
                (request.api_key, request.version(), request.correlation_id()),
                (ApiKey::Metadata, version, 42)
            );
            assert!(matches!(request.body, RequestKind::Metadata(_)));
        }
    }

    #[test]
    fn unsupported_and_malformed_requests_say_why() {
        assert!(matches!(
            decode(metadata_frame(13), supported),
            Err(RequestError::UnsupportedVersion {
                version: 13,
                correlation_id: 42,
                ..
            })
        ));
        let mut unknown = metadata_frame(1).to_vec();
        unknown[..2].copy_from_slice(&999i16.to_be_bytes());
        assert!(matches!(
            decode(unknown.into(), supported),
            Err(RequestError::UnsupportedApi { api_key: 999, .. })
        ));
        let frame = metadata_frame(9);
        assert!(matches!(
            decode(frame.slice(..frame.len() - 1), supported),
            Err(RequestError::Malformed { .. })
        ));
        assert!(matches!(
            decode(Bytes::from_static(&[0, 3, 0]), supported),
            Err(RequestError::TooShort { len: 3 })
        ));
    }

    #[test]
    fn a_huge_array_count_is_refused_without_allocating_it() {
        // Metadata v0: topics array with a count of i32::MAX and no elements.
        let mut frame = metadata_frame(0).to_vec();
        let len = frame.len();
        frame[len - 4..].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode(frame.into(), supported),
            Err(RequestError::Malformed { .. })
        ));
    }
}
