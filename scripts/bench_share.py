"""Share groups against classic groups (issue 13), with librdkafka's clients (confluent-kafka 2.16).

Usage: bench_share.py BOOTSTRAP [RECORDS] [WORKERS]. Produces RECORDS records of 100 bytes to a topic of
WORKERS partitions, then reads them all from the start twice, each time with WORKERS processes: a classic
consumer group (each process a Consumer, one partition each), and a share group (each process a
ShareConsumer with implicit acknowledgement, every process on every partition). Prints records per second for
each, from the start and from the first record on, and their ratios. Run by scripts/bench-share against a release server.
"""

import multiprocessing as mp
import sys
import time

from confluent_kafka import Consumer, Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

VALUE = b"x" * 100


def count(total, first, got):
    """Takes `got` records off the total; the first ones also set the time the first record arrived."""
    with total.get_lock():
        if first.value == 0.0:
            first.value = time.monotonic()
        total.value -= got


def classic(bootstrap, topic, total, first, started, done):
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "bench-classic",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
    })
    consumer.subscribe([topic])
    started.wait()
    while total.value > 0 and not done.is_set():
        messages = consumer.consume(1000, timeout=0.2)
        got = sum(1 for m in messages if m.error() is None)
        if got:
            count(total, first, got)
    consumer.close()


def share(bootstrap, topic, total, first, started, done):
    consumer = ShareConsumer({"bootstrap.servers": bootstrap, "group.id": "bench-share"})
    consumer.subscribe([topic])
    started.wait()
    while total.value > 0 and not done.is_set():
        got = sum(1 for m in consumer.poll(0.2) if m.error() is None)
        if got:
            count(total, first, got)
    consumer.close()


def run(kind, target, bootstrap, topic, records, workers):
    total = mp.Value("q", records)
    first = mp.Value("d", 0.0)
    started, done = mp.Event(), mp.Event()
    processes = [
        mp.Process(target=target, args=(bootstrap, topic, total, first, started, done)) for _ in range(workers)
    ]
    for p in processes:
        p.start()
    begin = time.monotonic()
    started.set()
    while total.value > 0:
        if time.monotonic() - begin > 300:
            done.set()
            raise SystemExit(f"{kind}: {total.value} records not read within 300 s")
        time.sleep(0.01)
    end = time.monotonic()
    done.set()
    for p in processes:
        p.join(30)
    # From the start (joining the group included), and from the first record on (reading only).
    rate, reading = records / (end - begin), records / (end - first.value)
    print(
        f"{kind:>8}: {records} records with {workers} processes in {end - begin:.2f} s: {rate:,.0f} records/s; "
        f"{reading:,.0f} records/s from the first record on (joining took {first.value - begin:.2f} s)"
    )
    return rate, reading


def main():
    bootstrap = sys.argv[1]
    records = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    topic = "bench-share"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, workers, 1)]).values():
        future.result()
    groups = KafkaAdminClient(bootstrap_servers=bootstrap)
    groups.alter_configs([
        ConfigResource(ConfigResourceType.GROUP, "bench-share", configs={"share.auto.offset.reset": "earliest"})
    ])
    groups.close()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000})
    for i in range(records):
        while True:
            try:
                producer.produce(topic, VALUE, partition=i % workers)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush()
    classic_rate = run("classic", classic, bootstrap, topic, records, workers)
    share_rate = run("share", share, bootstrap, topic, records, workers)
    print(
        f"share / classic: {share_rate[0] / classic_rate[0]:.2f} from the start, "
        f"{share_rate[1] / classic_rate[1]:.2f} from the first record on"
    )


if __name__ == "__main__":
    main()
