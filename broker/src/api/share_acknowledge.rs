//! ShareAcknowledge (KIP-932): a share group member's acknowledgements without a fetch. The member's share
//! session moves on by one epoch, or closes (epoch -1) after the acknowledgements, giving back the records it
//! still holds. Epoch 0 opens no session here: `INVALID_SHARE_SESSION_EPOCH`.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::share_acknowledge_response::{PartitionData, ShareAcknowledgeTopicResponse};
use kafka_protocol::messages::{ShareAcknowledgeRequest, ShareAcknowledgeResponse};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::share_fetch::{acknowledge, release};
use crate::broker::Broker;
use crate::share::partition::MemberId;
use crate::share::session::{OPEN_EPOCH, Step};

pub async fn handle(broker: &Broker, request: ShareAcknowledgeRequest, _version: i16) -> ShareAcknowledgeResponse {
    let refuse = |error: ResponseError, message: &str| {
        ShareAcknowledgeResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message.to_owned())))
    };
    let (Some(group), Some(member)) = (&request.group_id, &request.member_id) else {
        return refuse(
            ResponseError::InvalidRequest,
            "an acknowledgement names its group and member",
        );
    };
    let (group, member): (String, MemberId) = (group.0.to_string(), member.as_str().into());
    if request.share_session_epoch == OPEN_EPOCH {
        return refuse(
            ResponseError::InvalidShareSessionEpoch,
            "ShareAcknowledge cannot open a share session",
        );
    }
    let step = match broker
        .shares
        .sessions
        .step(&group, &member, request.share_session_epoch, &[], &[], Instant::now())
    {
        Ok(step) => step,
        Err(error) => return refuse(error, &error.to_string()),
    };
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let batches = p
                .acknowledgement_batches
                .iter()
                .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.as_slice()));
            let data = PartitionData::default().with_partition_index(p.partition_index);
            partitions.push(
                match acknowledge(broker, &group, &member, (topic.topic_id, p.partition_index), batches).await {
                    Ok(()) => data,
                    Err((error, message)) => data
                        .with_error_code(error.code())
                        .with_error_message(Some(StrBytes::from_string(message))),
                },
            );
        }
        topics.push(
            ShareAcknowledgeTopicResponse::default()
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    if let Step::Closed(partitions) = step {
        release(broker, &group, &member, &partitions);
    }
    ShareAcknowledgeResponse::default().with_responses(topics)
}
