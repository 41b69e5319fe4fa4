//! AlterConfigs: replaces all of a resource's own settings (a topic's overrides, a broker's dynamic configs,
//! a group's configs) with the ones given (the legacy, non-incremental API).

use std::collections::BTreeMap;

use futures_util::future::join_all;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::configs::alter;
use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: AlterConfigsRequest, _version: i16) -> AlterConfigsResponse {
    let validate_only = request.validate_only;
    let responses = request.resources.into_iter().map(|resource| async move {
        let replacement: BTreeMap<String, String> = resource
            .configs
            .iter()
            .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
            .collect();
        let (error_code, error_message) = alter(
            broker,
            resource.resource_type,
            &resource.resource_name,
            |_, configs| {
                *configs = replacement;
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
    AlterConfigsResponse::default().with_responses(join_all(responses).await)
}
