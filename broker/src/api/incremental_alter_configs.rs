//! IncrementalAlterConfigs: sets or deletes individual topic overrides, leaving the others as they are.

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::configs::alter_topic;
use crate::broker::{Broker, TopicFailure};

/// Kafka's `AlterConfigOp.OpType` codes.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

pub async fn handle(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let validate_only = request.validate_only;
    let responses = request.resources.into_iter().map(|resource| async move {
            let ops = resource.configs;
            let (error_code, error_message) = alter_topic(
                broker,
                resource.resource_type,
                &resource.resource_name,
                |configs| {
                    for op in &ops {
                        let name = op.name.to_string();
                        match (op.config_operation, &op.value) {
                            (OP_SET, Some(value)) => {
                                configs.insert(name, value.to_string());
                            }
                            (OP_DELETE, _) => {
                                configs.remove(&name);
                            }
                            (operation, _) => {
                                return Err(TopicFailure {
                                    error: ResponseError::InvalidConfig,
                                    message: format!("operation {operation} on `{name}` is not supported (only SET with a value, and DELETE)"),
                                });
                            }
                        }
                    }
                    Ok(())
                },
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
