//! Shared by DescribeConfigs, AlterConfigs and IncrementalAlterConfigs: the config resources a request may
//! name, and how their settings are changed.
//!
//! Three kinds of resource have settings, all kept as metadata by the controller: topics (their overrides),
//! brokers (dynamic broker configs: a broker id, or the empty name for the cluster-wide defaults) and groups
//! (KIP-848 group configs). What each may hold is checked in `Broker::set_configs`.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::protocol::StrBytes;
use strata_controller::ConfigResource;
use tracing::warn;

use crate::broker::{Broker, TopicFailure};
use crate::settings::SettingSource;

/// Kafka's `ConfigResource.Type` codes.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_GROUP: i8 = 32;

/// Kafka's `ConfigSource` codes.
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_DEFAULT: i8 = 5;
pub const SOURCE_GROUP: i8 = 8;

/// The `ConfigSource` code of where a topic's setting comes from.
pub fn source_code(source: SettingSource) -> i8 {
    match source {
        SettingSource::Topic => SOURCE_TOPIC,
        SettingSource::StaticBroker => crate::dynamic::SOURCE_STATIC_BROKER,
        SettingSource::Default => SOURCE_DEFAULT,
    }
}

/// The resource a request names, or why this broker cannot serve it. A broker resource is this broker's id
/// or the empty name: Kafka's clients send a broker's configs to that broker, and a broker refuses another's
/// id (INVALID_REQUEST, as Kafka does).
pub fn resource(broker: &Broker, resource_type: i8, name: &str) -> Result<ConfigResource, TopicFailure> {
    match resource_type {
        RESOURCE_TOPIC => Ok(ConfigResource::Topic(name.to_owned())),
        RESOURCE_BROKER if name.is_empty() || name == broker.node_id().to_string() => {
            Ok(ConfigResource::Broker(name.to_owned()))
        }
        RESOURCE_BROKER => Err(TopicFailure {
            error: ResponseError::InvalidRequest,
            message: format!(
                "unexpected broker id: this is broker {}; expected {0} or the empty name (cluster-wide), not `{name}`",
                broker.node_id()
            ),
        }),
        RESOURCE_GROUP if name.is_empty() => Err(TopicFailure {
            error: ResponseError::InvalidGroupId,
            message: "a group resource needs a group id".into(),
        }),
        RESOURCE_GROUP => Ok(ConfigResource::Group(name.to_owned())),
        other => Err(TopicFailure {
            error: ResponseError::InvalidRequest,
            message: format!("config resource type {other} is not supported"),
        }),
    }
}

/// Applies `change` to the settings a resource has of its own and stores the result, or says why not, as
/// (error, message) for the response.
pub async fn alter(
    broker: &Broker,
    resource_type: i8,
    resource_name: &StrBytes,
    change: impl FnOnce(&ConfigResource, &mut BTreeMap<String, String>) -> Result<(), TopicFailure>,
    validate_only: bool,
) -> (i16, Option<StrBytes>) {
    let result = async {
        let target = resource(broker, resource_type, resource_name)?;
        let mut configs = broker.configs_of(&target)?;
        change(&target, &mut configs)?;
        broker.set_configs(&target, configs, validate_only).await
    }
    .await;
    match result {
        Ok(()) => (0, None),
        Err(failure) => {
            warn!(resource_type, resource = %resource_name, error = ?failure.error, message = %failure.message, "config change refused");
            (failure.error.code(), Some(StrBytes::from_string(failure.message)))
        }
    }
}
