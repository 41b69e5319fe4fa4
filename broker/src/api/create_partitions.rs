//! CreatePartitions: grows topics; partitions are placed on this node.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: CreatePartitionsRequest, _version: i16) -> CreatePartitionsResponse {
    let results = request
        .topics
        .into_iter()
        .map(|topic| {
            let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            if topic.assignments.is_some() {
                return result
                    .with_error_code(ResponseError::InvalidReplicaAssignment.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "manual replica assignments are not supported",
                    )));
            }
            match broker.add_partitions(&topic.name, topic.count, request.validate_only) {
                Ok(_) => result,
                Err(failure) => result
                    .with_error_code(failure.error.code())
                    .with_error_message(Some(StrBytes::from_string(failure.message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
