//! Shared by DescribeConfigs, AlterConfigs and IncrementalAlterConfigs: resource types and how a topic's
//! settings are changed.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::protocol::StrBytes;
use tracing::warn;

use crate::broker::{Broker, TopicFailure};
use crate::settings::SettingSource;

/// Kafka's `ConfigResource.Type` codes.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Kafka's `ConfigSource` codes.
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// The `ConfigSource` code of where a topic's setting comes from.
pub fn source_code(source: SettingSource) -> i8 {
    match source {
        SettingSource::Topic => SOURCE_TOPIC,
        SettingSource::StaticBroker => SOURCE_STATIC_BROKER,
        SettingSource::Default => SOURCE_DEFAULT,
    }
}

/// Applies new overrides to a topic resource, or says why not, as (error, message) for the response.
pub async fn alter_topic(
    broker: &Broker,
    resource_type: i8,
    resource_name: &StrBytes,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), TopicFailure>,
    validate_only: bool,
) -> (i16, Option<StrBytes>) {
    let result = match resource_type {
        RESOURCE_TOPIC => match broker.metadata.get(resource_name) {
            None => Err(TopicFailure {
                error: ResponseError::UnknownTopicOrPartition,
                message: format!("topic `{resource_name}` does not exist"),
            }),
            Some(topic) => {
                let mut configs = topic.configs;
                match change(&mut configs) {
                    Ok(()) => broker.set_topic_configs(&topic.name, configs, validate_only).await,
                    Err(failure) => Err(failure),
                }
            }
        },
        RESOURCE_BROKER => Err(TopicFailure {
            error: ResponseError::InvalidRequest,
            message: "broker settings are set at start (--set); they cannot be changed live".into(),
        }),
        other => Err(TopicFailure {
            error: ResponseError::InvalidRequest,
            message: format!("resource type {other} is not supported"),
        }),
    };
    match result {
        Ok(_) => (0, None),
        Err(failure) => {
            warn!(resource = %resource_name, error = ?failure.error, message = %failure.message, "config change refused");
            (failure.error.code(), Some(StrBytes::from_string(failure.message)))
        }
    }
}
