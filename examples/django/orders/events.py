"""Publishing order events to Strata with confluent-kafka.

One producer per process, made on first use: a producer holds connections and a background thread, and is
safe to share between threads (Django's threaded runserver, gunicorn threads).
"""

import json
import threading

from confluent_kafka import KafkaException, Producer
from django.conf import settings

_producer = None
_producer_lock = threading.Lock()

# How long a request waits for Strata to confirm an event before giving up.
PUBLISH_TIMEOUT_S = 10


def producer():
    global _producer
    with _producer_lock:
        if _producer is None:
            _producer = Producer(settings.KAFKA_PRODUCER)
        return _producer


def publish(topic, key, event):
    """Publishes `event` (a dict, sent as JSON) keyed by `key`, and waits until Strata has it.

    Returns `(partition, offset)`. Raises `KafkaException` if Strata did not confirm the event in time.
    """
    outcome = {}

    def delivered(err, msg):
        outcome["err"] = err
        outcome["msg"] = msg

    p = producer()
    p.produce(topic, key=key.encode(), value=json.dumps(event).encode(), on_delivery=delivered)
    # Waiting makes the answer to the client mean "recorded": a shop that prefers latency could return at
    # once and let the delivery callback log failures.
    p.flush(PUBLISH_TIMEOUT_S)
    if "msg" not in outcome:
        raise KafkaException(f"no confirmation from Strata within {PUBLISH_TIMEOUT_S} s")
    if outcome["err"] is not None:
        raise KafkaException(outcome["err"])
    return outcome["msg"].partition(), outcome["msg"].offset()
