//! Encoding a response: the header its API and version need, then the body.

use std::fmt::Display;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;
use thiserror::Error;

/// A response that does not fit its version: a broker bug, never the client's input.
#[derive(Debug, Error)]
#[error("encoding a {api_key:?} v{version} response failed: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub version: i16,
    pub reason: String,
}

/// Encodes `body` as the response to request `correlation_id`, at `version` of `api_key`.
pub fn encode(api_key: ApiKey, version: i16, correlation_id: i32, body: &ResponseKind) -> Result<Bytes, EncodeError> {
    let failed = |reason: &dyn Display| EncodeError {
        api_key,
        version,
        reason: reason.to_string(),
    };
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| failed(&e))?;
    body.encode(&mut buf, version).map_err(|e| failed(&e))?;
    Ok(buf.freeze())
}
