//! DescribeConfigs: a topic's settings (its overrides and the broker defaults it inherits), or the broker's.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::configs::{RESOURCE_BROKER, RESOURCE_TOPIC, SOURCE_STATIC_BROKER, source_code};
use crate::broker::Broker;

/// Kafka's `ConfigType` codes, shown from v3.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_SHORT: i8 = 4;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;

pub fn handle(broker: &Broker, request: DescribeConfigsRequest, _version: i16) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let entries: Vec<(&str, String, i8)> = match resource.resource_type {
                RESOURCE_TOPIC => match broker.metadata.get(&resource.resource_name) {
                    Some(topic) => broker
                        .settings
                        .describe_topic(&topic.configs)
                        .into_iter()
                        .map(|s| (s.name, s.value, source_code(s.source)))
                        .collect(),
                    None => return result.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                },
                RESOURCE_BROKER
                    if resource.resource_name.is_empty() || *resource.resource_name == broker.node_id().to_string() =>
                {
                    broker
                        .settings
                        .describe_broker()
                        .into_iter()
                        .map(|(name, value)| (name, value, SOURCE_STATIC_BROKER))
                        .collect()
                }
                RESOURCE_BROKER => {
                    return result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "this is broker {}",
                            broker.node_id()
                        ))));
                }
                _ => return result.with_error_code(ResponseError::InvalidRequest.code()),
            };
            let wanted = |name: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let configs = entries
                .into_iter()
                .filter(|(name, _, _)| wanted(name))
                .map(|(name, value, source)| {
                    DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_static_str(name))
                        .with_value(Some(StrBytes::from_string(value)))
                        .with_config_source(source)
                        .with_config_type(config_type(name))
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The type Kafka's `ConfigDef` gives each setting, topic and broker names alike.
fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy"
        | "log.cleanup.policy"
        | "leader.replication.throttled.replicas"
        | "follower.replication.throttled.replicas" => TYPE_LIST,
        "auto.create.topics.enable"
        | "auto.leader.rebalance.enable"
        | "unclean.leader.election.enable"
        | "preallocate"
        | "log.preallocate"
        | "remote.storage.enable"
        | "remote.log.copy.disable"
        | "remote.log.delete.on.disable" => TYPE_BOOLEAN,
        "broker.rack" | "compression.type" | "message.timestamp.type" | "log.message.timestamp.type" => TYPE_STRING,
        "min.cleanable.dirty.ratio" | "log.cleaner.min.cleanable.ratio" => TYPE_DOUBLE,
        "segment.bytes"
        | "segment.index.bytes"
        | "index.interval.bytes"
        | "max.message.bytes"
        | "min.insync.replicas"
        | "compression.gzip.level"
        | "compression.lz4.level"
        | "compression.zstd.level"
        | "num.partitions"
        | "message.max.bytes"
        | "log.segment.bytes"
        | "log.index.size.max.bytes"
        | "log.index.interval.bytes"
        | "socket.request.max.bytes"
        | "max.connections"
        | "max.connections.per.ip"
        | "queued.max.request.bytes"
        | "group.initial.rebalance.delay.ms"
        | "group.max.size"
        | "offsets.retention.minutes"
        | "broker.heartbeat.interval.ms"
        | "broker.session.timeout.ms" => TYPE_INT,
        "default.replication.factor" | "offsets.topic.replication.factor" => TYPE_SHORT,
        _ => TYPE_LONG,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::BrokerSettings;

    #[test]
    fn every_topic_setting_has_kafkas_type() {
        let expected = |name: &str| match name {
            "cleanup.policy" | "leader.replication.throttled.replicas" | "follower.replication.throttled.replicas" => {
                TYPE_LIST
            }
            "preallocate"
            | "remote.storage.enable"
            | "remote.log.copy.disable"
            | "remote.log.delete.on.disable"
            | "unclean.leader.election.enable" => TYPE_BOOLEAN,
            "compression.type" | "message.timestamp.type" => TYPE_STRING,
            "min.cleanable.dirty.ratio" => TYPE_DOUBLE,
            "segment.bytes"
            | "segment.index.bytes"
            | "index.interval.bytes"
            | "max.message.bytes"
            | "min.insync.replicas"
            | "compression.gzip.level"
            | "compression.lz4.level"
            | "compression.zstd.level" => TYPE_INT,
            _ => TYPE_LONG,
        };
        let described = BrokerSettings::default().describe_topic(&Default::default());
        assert_eq!(described.len(), 33, "Kafka 4's topic settings");
        for setting in described {
            assert_eq!(config_type(setting.name), expected(setting.name), "{}", setting.name);
        }
    }
}
