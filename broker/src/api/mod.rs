//! One file per Kafka API, and the one `match` that sends each request to its file.
//!
//! [`SUPPORTED`] is what ApiVersions advertises and what the request decoder accepts: exactly the APIs and
//! versions implemented here, never more.

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use strata_protocol::request::Request;

use crate::broker::Broker;

mod alter_configs;
mod api_versions;
mod configs;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod fetch;
mod incremental_alter_configs;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod produce;

pub use api_versions::unsupported_version_response;

/// The APIs this broker implements, with the versions it handles. Lower bounds are the oldest versions that
/// Kafka 4 still accepts (KIP-896), upper bounds the newest whose semantics are implemented in full.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
];

/// The versions of `api_key` this broker handles.
pub fn supported(api_key: ApiKey) -> Option<std::ops::RangeInclusive<i16>> {
    SUPPORTED
        .iter()
        .find(|(key, _, _)| *key == api_key)
        .map(|(_, min, max)| *min..=*max)
}

/// Handles one request. `None` means no response is sent (a produce with `acks=0`).
pub async fn handle(broker: &Broker, request: Request) -> Option<ResponseKind> {
    let version = request.version();
    Some(match request.body {
        RequestKind::ApiVersions(body) => ResponseKind::ApiVersions(api_versions::handle(body, version)),
        RequestKind::Metadata(body) => ResponseKind::Metadata(metadata::handle(broker, body, version)),
        RequestKind::CreateTopics(body) => ResponseKind::CreateTopics(create_topics::handle(broker, body, version)),
        RequestKind::DeleteTopics(body) => ResponseKind::DeleteTopics(delete_topics::handle(broker, body, version)),
        RequestKind::Produce(body) => return produce::handle(broker, body, version).map(ResponseKind::Produce),
        RequestKind::Fetch(body) => ResponseKind::Fetch(fetch::handle(broker, body, version).await),
        RequestKind::ListOffsets(body) => ResponseKind::ListOffsets(list_offsets::handle(broker, body, version)),
        RequestKind::DeleteRecords(body) => ResponseKind::DeleteRecords(delete_records::handle(broker, body, version)),
        RequestKind::DescribeConfigs(body) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(broker, body, version))
        }
        RequestKind::AlterConfigs(body) => ResponseKind::AlterConfigs(alter_configs::handle(broker, body, version)),
        RequestKind::IncrementalAlterConfigs(body) => {
            ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(broker, body, version))
        }
        RequestKind::CreatePartitions(body) => {
            ResponseKind::CreatePartitions(create_partitions::handle(broker, body, version))
        }
        RequestKind::DescribeCluster(body) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(broker, body, version))
        }
        RequestKind::InitProducerId(body) => {
            ResponseKind::InitProducerId(init_producer_id::handle(broker, body, version))
        }
        other => unreachable!("the decoder only accepts APIs in SUPPORTED, not {other:?}"),
    })
}
