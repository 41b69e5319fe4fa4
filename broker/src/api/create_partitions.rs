//! CreatePartitions: grows topics. New partitions are placed by the controller, or, with `assignments`, on
//! the replicas given for each (one list per new partition, each as long as the topic's replication factor;
//! INVALID_REPLICA_ASSIGNMENT otherwise, as in Kafka).

use futures_util::future::join_all;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: CreatePartitionsRequest, _version: i16) -> CreatePartitionsResponse {
    let validate_only = request.validate_only;
    let results = request.topics.into_iter().map(|topic| async move {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        let assignment: Option<Vec<Vec<i32>>> = topic.assignments.as_ref().map(|assignments| {
            assignments
                .iter()
                .map(|a| a.broker_ids.iter().map(|id| id.0).collect())
                .collect()
        });
        match broker
            .add_partitions(&topic.name, topic.count, assignment.as_deref(), validate_only)
            .await
        {
            Ok(_) => result,
            Err(failure) => result
                .with_error_code(failure.error.code())
                .with_error_message(Some(StrBytes::from_string(failure.message))),
        }
    });
    CreatePartitionsResponse::default().with_results(join_all(results).await)
}
