"""A share group worker (confluent-kafka ShareConsumer, KIP-932), for broker/tests/python_clients.rs.

Usage: share_worker.py BOOTSTRAP GROUP TOPIC OUT MODE. Appends one line per record it gets to OUT:
"<mode> <partition> <offset> <delivery count> <value>". MODE `accept` acknowledges every record after
writing it down: REJECT for a value starting `poison`, RELEASE for one starting `flaky` (it fails every
time), ACCEPT for the rest, then commits the acknowledgements synchronously and, for each partition whose
commit the broker confirmed, writes its records down again as "committed ..."; `hold` writes down the records of its first non-empty poll and then holds them
without acknowledging, until it is killed. Stops, closing the consumer, when the file OUT.stop appears.
"""

import os
import sys
import time

from confluent_kafka import AcknowledgeType, ShareConsumer


def main():
    bootstrap, group, topic, out, mode = sys.argv[1:6]
    consumer = ShareConsumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "share.acknowledgement.mode": "explicit",
        "max.poll.records": 5,
    })
    consumer.subscribe([topic])
    with open(out, "a", buffering=1) as log:
        while not os.path.exists(out + ".stop"):
            batch = [m for m in consumer.poll(0.2) if m.error() is None]
            for m in batch:
                log.write(f"{mode} {m.partition()} {m.offset()} {m.delivery_count()} {m.value().decode()}\n")
            if mode == "hold" and batch:
                while True:
                    time.sleep(1)  # holding the records until SIGKILL
            for m in batch:
                # A little work per record, so that the five workers share the backlog.
                time.sleep(0.005)
                value = m.value().decode()
                if value.startswith("poison"):
                    consumer.acknowledge(m, AcknowledgeType.REJECT)
                elif value.startswith("flaky"):
                    consumer.acknowledge(m, AcknowledgeType.RELEASE)
                else:
                    consumer.acknowledge(m, AcknowledgeType.ACCEPT)
            if batch:
                confirmed = consumer.commit_sync()
                for m in batch:
                    ok = any(tp.partition == m.partition() and error is None for tp, error in confirmed.items())
                    if ok:
                        log.write(f"committed {m.partition()} {m.offset()} {m.delivery_count()} {m.value().decode()}\n")
    consumer.close()


if __name__ == "__main__":
    main()
