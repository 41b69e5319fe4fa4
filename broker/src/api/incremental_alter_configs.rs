//! IncrementalAlterConfigs: changes individual settings of a topic, a broker (dynamic broker configs) or a
//! group, leaving the others as they are.
//!
//! The four operations of KIP-339: SET a value, DELETE the resource's own value (the default applies
//! again), and, on list-typed configs only (`cleanup.policy`, the throttled-replica lists), APPEND items
//! not already in the list and SUBTRACT items from it. Both start from the resource's own value, or from
//! Kafka's default when it has none, and keep the list's order (Kafka's `ConfigurationControlManager`).
//! APPEND or SUBTRACT on any other config is INVALID_CONFIG; a key named twice in one resource, or a
//! missing value, INVALID_REQUEST, as in Kafka. A resource's changes are applied together or not at all.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::configs::alter;
use crate::broker::{Broker, TopicFailure};
use crate::dynamic::{is_list, list_default};

/// Kafka's `AlterConfigOp.OpType` codes.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub async fn handle(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let validate_only = request.validate_only;
    let responses = request.resources.into_iter().map(|resource| async move {
        let ops = resource.configs;
        let (error_code, error_message) = alter(
            broker,
            resource.resource_type,
            &resource.resource_name,
            |_, configs| apply(&ops, configs),
            validate_only,
        )
        .await;
        AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name)
            .with_error_code(error_code)
            .with_error_message(error_message)
    });
    IncrementalAlterConfigsResponse::default().with_responses(join_all(responses).await)
}

/// Applies `ops` to a resource's own settings.
fn apply(ops: &[AlterableConfig], configs: &mut BTreeMap<String, String>) -> Result<(), TopicFailure> {
    let failure = |error, message: String| TopicFailure { error, message };
    let mut seen = BTreeSet::new();
    for op in ops {
        if !seen.insert(op.name.as_str()) {
            return Err(failure(
                ResponseError::InvalidRequest,
                format!("duplicate config key `{}` in one resource", op.name),
            ));
        }
    }
    for op in ops {
        let name = op.name.to_string();
        let operation = op.config_operation;
        if matches!(operation, OP_APPEND | OP_SUBTRACT) && !is_list(&name) {
            let verb = if operation == OP_APPEND {
                "APPEND to"
            } else {
                "SUBTRACT from"
            };
            return Err(failure(
                ResponseError::InvalidConfig,
                format!("cannot {verb} `{name}`: its type is not LIST"),
            ));
        }
        let value = match (operation, &op.value) {
            (OP_DELETE, _) => {
                configs.remove(&name);
                continue;
            }
            (OP_SET | OP_APPEND | OP_SUBTRACT, Some(value)) => value.to_string(),
            (OP_SET | OP_APPEND | OP_SUBTRACT, None) => {
                return Err(failure(
                    ResponseError::InvalidRequest,
                    format!("a null value is not supported for `{name}`"),
                ));
            }
            (other, _) => {
                return Err(failure(
                    ResponseError::InvalidRequest,
                    format!("unknown config operation {other} on `{name}`"),
                ));
            }
        };
        let new = match operation {
            OP_SET => value,
            _ => {
                let current = configs.get(&name).map_or(list_default(&name), String::as_str);
                let mut items: Vec<&str> = current.split(',').filter(|item| !item.is_empty()).collect();
                for item in value.split(',').filter(|item| !item.is_empty()) {
                    if operation == OP_APPEND && !items.contains(&item) {
                        items.push(item);
                    }
                    if operation == OP_SUBTRACT {
                        items.retain(|kept| *kept != item);
                    }
                }
                items.join(",")
            }
        };
        configs.insert(name, new);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn op(name: &'static str, operation: i8, value: Option<&'static str>) -> AlterableConfig {
        AlterableConfig::default()
            .with_name(StrBytes::from_static_str(name))
            .with_config_operation(operation)
            .with_value(value.map(StrBytes::from_static_str))
    }

    #[test]
    fn append_and_subtract_edit_lists_from_the_default() {
        let mut configs = BTreeMap::new();
        apply(&[op("cleanup.policy", OP_APPEND, Some("compact"))], &mut configs).unwrap();
        assert_eq!(
            configs["cleanup.policy"], "delete,compact",
            "from Kafka's default, `delete`"
        );
        apply(&[op("cleanup.policy", OP_APPEND, Some("compact"))], &mut configs).unwrap();
        assert_eq!(
            configs["cleanup.policy"], "delete,compact",
            "an item already there is not repeated"
        );
        apply(&[op("cleanup.policy", OP_SUBTRACT, Some("delete"))], &mut configs).unwrap();
        assert_eq!(configs["cleanup.policy"], "compact");
        let throttled = "follower.replication.throttled.replicas";
        apply(&[op(throttled, OP_APPEND, Some("0:1,1:2"))], &mut configs).unwrap();
        apply(&[op(throttled, OP_SUBTRACT, Some("0:1"))], &mut configs).unwrap();
        assert_eq!(configs[throttled], "1:2");
    }

    #[test]
    fn kafkas_refusals() {
        let mut configs = BTreeMap::new();
        let code =
            |ops: &[AlterableConfig], configs: &mut BTreeMap<String, String>| apply(ops, configs).unwrap_err().error;
        assert_eq!(
            code(&[op("retention.ms", OP_APPEND, Some("1"))], &mut configs),
            ResponseError::InvalidConfig
        );
        assert_eq!(
            code(&[op("retention.ms", OP_SUBTRACT, Some("1"))], &mut configs),
            ResponseError::InvalidConfig
        );
        assert_eq!(
            code(
                &[
                    op("retention.ms", OP_SET, Some("1")),
                    op("retention.ms", OP_DELETE, None)
                ],
                &mut configs
            ),
            ResponseError::InvalidRequest
        );
        assert_eq!(
            code(&[op("retention.ms", OP_SET, None)], &mut configs),
            ResponseError::InvalidRequest
        );
        assert_eq!(
            code(&[op("retention.ms", 9, Some("1"))], &mut configs),
            ResponseError::InvalidRequest
        );
    }
}
