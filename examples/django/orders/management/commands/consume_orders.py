"""`manage.py consume_orders`: the order worker. Reads `order.created` events in a consumer group and fulfils
each order, committing an event's offset only after its effect is in the database.

Start more workers with the same `--group` to share the partitions (at most one worker per partition is
busy); use another group to read the same events independently; `--from-offset` replays.
"""

import json
import logging
import signal

from confluent_kafka import Consumer, KafkaError, KafkaException
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from orders.models import Order, ProcessedEvent

log = logging.getLogger("orders.worker")

# How long one poll waits for an event; also how long a stop request may wait to be noticed.
POLL_TIMEOUT_S = 1.0


class Command(BaseCommand):
    help = "Fulfil orders from the order events topic, in a consumer group, committing after each event."

    def add_arguments(self, parser):
        parser.add_argument("--group", default="order-worker", help="consumer group id (default order-worker)")
        parser.add_argument("--topic", default=settings.ORDERS_TOPIC)
        parser.add_argument(
            "--from-offset",
            type=int,
            default=None,
            help="replay: start every partition assigned at first at this offset instead of the committed one",
        )
        parser.add_argument("--max-events", type=int, default=None, help="stop after this many events")

    def handle(self, *args, group, topic, from_offset, max_events, **options):
        self.stopping = False
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        consumer = Consumer(
            {
                "bootstrap.servers": settings.STRATA_BOOTSTRAP,
                "group.id": group,
                "client.id": "shop-order-worker",
                # Commits are made by hand, after processing: an event is committed only once its effect
                # is in the database.
                "enable.auto.commit": False,
                # A new group starts at the first event; a group with committed offsets resumes there.
                "auto.offset.reset": "earliest",
            }
        )
        replayed = set()

        def on_assign(consumer, partitions):
            if from_offset is not None:
                # Only the first assignment of a partition replays: after a rebalance, the group's committed
                # offset is where to go on.
                for tp in partitions:
                    if (tp.topic, tp.partition) not in replayed:
                        tp.offset = from_offset
                        replayed.add((tp.topic, tp.partition))
                consumer.assign(partitions)
            self.stdout.write(f"assigned {sorted(tp.partition for tp in partitions)}", ending="\n")
            self.stdout.flush()

        consumer.subscribe([topic], on_assign=on_assign)
        handled = 0
        try:
            while not self.stopping and (max_events is None or handled < max_events):
                msg = consumer.poll(POLL_TIMEOUT_S)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("consumer error: %s", msg.error())
                    continue
                self.process(group, msg)
                try:
                    consumer.commit(message=msg, asynchronous=False)
                except KafkaException as e:
                    # The partition moved to another worker (a rebalance): it gets the event again, and
                    # finds it in ProcessedEvent.
                    log.warning("commit of %s[%d]@%d failed: %s", msg.topic(), msg.partition(), msg.offset(), e)
                handled += 1
        finally:
            # Leaves the group at once, so the partitions move to the other workers without waiting for a
            # session timeout.
            consumer.close()

    def process(self, group, msg):
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        key = (msg.key() or b"").decode(errors="replace")
        try:
            event = json.loads(msg.value())
            order_id = event["id"]
        except (ValueError, KeyError, TypeError):
            # A record the worker cannot read would stop the partition forever if it were retried: log it
            # and go on (a dead-letter topic is the next step up; see docs/coming-from.md).
            log.error("skipping unreadable event at %s", where)
            self.stdout.write(f"unreadable {where}")
            return
        with transaction.atomic():
            _, first = ProcessedEvent.objects.get_or_create(
                group=group, topic=msg.topic(), partition=msg.partition(), offset=msg.offset(), defaults={"key": key}
            )
            if first and event.get("type") == "order.created":
                Order.objects.filter(public_id=order_id, fulfilled_at__isnull=True).update(
                    fulfilled_at=timezone.now()
                )
        self.stdout.write(f"{'processed' if first else 'duplicate'} {where} key={key}")
        self.stdout.flush()

    def stop(self, signum, frame):
        self.stopping = True
