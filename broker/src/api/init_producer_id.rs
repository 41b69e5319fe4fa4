//! InitProducerId: a new producer id for an idempotent producer. Transactions (a transactional id) are not
//! supported; clients reach them only through FindCoordinator, which is not advertised.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::error;

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: InitProducerIdRequest, _version: i16) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request.transactional_id.is_some() {
        return response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    // An idempotent producer that asks again (after UNKNOWN_PRODUCER_ID or a sequence gap) gets a fresh id,
    // as Kafka gives one to every producer without a transactional id.
    match broker.producer_ids.allocate() {
        Ok(id) => response.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            error!(error = %e, "allocating a producer id failed");
            response.with_error_code(ResponseError::KafkaStorageError.code())
        }
    }
}
