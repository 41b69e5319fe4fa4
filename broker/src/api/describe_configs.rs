//! DescribeConfigs: a topic's settings (its overrides and the broker defaults it inherits), a broker's (the
//! settings in force, each with its source: dynamic for this broker, dynamic cluster-wide, or static; the
//! empty broker name shows only the cluster-wide dynamic configs, as Kafka does), or a group's (KIP-848 group
//! configs, defaults included).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use strata_controller::ConfigResource;

use super::configs::{self, SOURCE_DEFAULT, SOURCE_GROUP, source_code};
use crate::broker::Broker;
use crate::dynamic;
use crate::settings::{SettingSource, broker_to_topic_key};

/// Kafka's `ConfigType` codes, shown from v3.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_SHORT: i8 = 4;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;

/// One setting of a described resource.
struct Entry {
    name: String,
    value: String,
    source: i8,
    read_only: bool,
}

pub fn handle(broker: &Broker, request: DescribeConfigsRequest, _version: i16) -> DescribeConfigsResponse {
    let image = broker.metadata.image();
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let target = match configs::resource(broker, resource.resource_type, &resource.resource_name) {
                Ok(target) => target,
                Err(failure) => {
                    return result
                        .with_error_code(failure.error.code())
                        .with_error_message(Some(StrBytes::from_string(failure.message)));
                }
            };
            let entries: Vec<Entry> = match &target {
                ConfigResource::Topic(name) => match broker.metadata.get(name) {
                    Some(topic) => {
                        let (cluster, node) = broker.dynamic_configs(&image);
                        broker
                            .settings()
                            .describe_topic(&topic.configs)
                            .into_iter()
                            .map(|s| Entry {
                                name: s.name.to_owned(),
                                value: s.value,
                                source: topic_source(s.name, s.source, cluster, node),
                                read_only: false,
                            })
                            .collect()
                    }
                    None => return result.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                },
                ConfigResource::Broker(name) => {
                    let (cluster, node) = broker.dynamic_configs(&image);
                    let described = if name.is_empty() {
                        dynamic::describe_cluster_defaults(cluster)
                    } else {
                        dynamic::describe_broker(&broker.settings(), cluster, node)
                    };
                    described
                        .into_iter()
                        .map(|d| Entry {
                            name: d.name,
                            value: d.value,
                            source: d.source,
                            read_only: d.read_only,
                        })
                        .collect()
                }
                ConfigResource::Group(_) => dynamic::describe_group(image.configs(&target))
                    .into_iter()
                    .map(|(name, value, own)| Entry {
                        name: name.to_owned(),
                        value,
                        source: if own { SOURCE_GROUP } else { SOURCE_DEFAULT },
                        read_only: false,
                    })
                    .collect(),
            };
            let wanted = |name: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let configs = entries
                .into_iter()
                .filter(|entry| wanted(&entry.name))
                .map(|entry| {
                    let config_type = match &target {
                        ConfigResource::Group(_) if dynamic::group_config_is_int(&entry.name) => TYPE_INT,
                        ConfigResource::Group(_) => TYPE_STRING,
                        _ => config_type(&entry.name),
                    };
                    DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_string(entry.name))
                        .with_value(Some(StrBytes::from_string(entry.value)))
                        .with_config_source(entry.source)
                        .with_read_only(entry.read_only)
                        .with_config_type(config_type)
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Where a topic's value of `name` comes from: the topic, else a dynamic broker config (this broker's, then
/// the cluster-wide one) under its broker name, else the static settings or Kafka's default.
fn topic_source(
    name: &str,
    source: SettingSource,
    cluster: Option<&strata_controller::Configs>,
    node: Option<&strata_controller::Configs>,
) -> i8 {
    let set_in = |configs: Option<&strata_controller::Configs>| {
        configs.is_some_and(|c| {
            c.keys()
                .any(|key| key == name || broker_to_topic_key(key) == Some(name))
        })
    };
    match source {
        SettingSource::Topic => source_code(source),
        _ if set_in(node) => dynamic::SOURCE_DYNAMIC_BROKER,
        _ if set_in(cluster) => dynamic::SOURCE_DYNAMIC_DEFAULT_BROKER,
        _ => source_code(source),
    }
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
        | "max.incremental.fetch.session.cache.slots"
        | "group.share.record.lock.duration.ms"
        | "group.share.delivery.count.limit"
        | "group.share.partition.max.record.locks"
        | "group.share.session.timeout.ms"
        | "group.share.heartbeat.interval.ms"
        | "group.share.max.share.sessions"
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
