//! CreatePartitions: grows topics; partitions are placed on this node.

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: CreatePartitionsRequest, _version: i16) -> CreatePartitionsResponse {
    let validate_only = request.validate_only;
    let results = request.topics.into_iter().map(|topic| async move {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        if topic.assignments.is_some() {
            return result
                .with_error_code(ResponseError::InvalidReplicaAssignment.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "manual replica assignments are not supported",
                )));
        }
        match broker.add_partitions(&topic.name, topic.count, validate_only).await {
            Ok(_) => result,
            Err(failure) => result
                .with_error_code(failure.error.code())
                .with_error_message(Some(StrBytes::from_string(failure.message))),
        }
    });
    CreatePartitionsResponse::default().with_results(join_all(results).await)
}
