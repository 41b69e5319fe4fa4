"""kafka-python against Strata: incremental fetch sessions (KIP-227), as kafka-python 3 keeps them by default.

Usage: fetch_sessions.py BOOTSTRAP TOPIC. Creates TOPIC with 40 partitions, produces a keyed record to every
partition, consumes them all, then produces to two partitions only and consumes those, while the consumer
keeps one fetch session with the broker. Prints one JSON object with what happened; the Rust test
(broker/tests/python_clients.rs) judges it.
"""

import json
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

PARTITIONS = 40
DEADLINE_S = 60


def consume(consumer, want):
    """Polls until `want` records arrived or the deadline passed; returns {(partition, offset): value}."""
    got = {}
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < want and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            for r in records:
                got[(tp.partition, r.offset)] = r.value.decode()
    return got


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    admin.close()

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    first = [producer.send(topic, value=f"first-{p}".encode(), partition=p) for p in range(PARTITIONS)]
    producer.flush()
    first_offsets = [f.get(timeout=30).offset for f in first]

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,
    )
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    first_read = consume(consumer, PARTITIONS)

    # Only partitions 5 and 17 get more records: the session's polls carry just those.
    second = [producer.send(topic, value=f"second-{i}".encode(), partition=5 + 12 * (i % 2)) for i in range(20)]
    producer.flush()
    for f in second:
        f.get(timeout=30)
    second_read = consume(consumer, 20)

    fetcher = consumer._fetcher
    sessions = {str(node): h.next_metadata.session_id for node, h in fetcher._session_handlers.items()}
    print(json.dumps({
        "produced_first": len([o for o in first_offsets if o == 0]),
        "first_read": sorted(v for v in first_read.values()),
        "second_read": sorted(v for v in second_read.values()),
        "second_partitions": sorted({p for (p, _) in second_read}),
        "sessions": sessions,
    }))
    consumer.close()
    producer.close()


if __name__ == "__main__":
    main()
