"""The shop against a live Strata: `STRATA_BOOTSTRAP` must name a running node or cluster
(broker/tests/django_example.rs starts one and runs `manage.py test`).

The workers run as they do in production, as separate processes (`manage.py consume_orders`,
`celery -A shop worker`), on the test database: hence TransactionTestCase, whose writes are committed
where those processes can see them. Each test uses its own topic, so runs against one cluster do not mix.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import TransactionTestCase

from . import events
from .models import Order, ProcessedEvent

MANAGE_PY = Path(__file__).resolve().parent.parent / "manage.py"
# How long a worker may take to do what a test waits for: start, join its group, process.
WAIT_S = 60
# How long a worker may take to stop after SIGTERM or after its last event.
STOP_S = 30


def wait_for(what, condition, timeout=WAIT_S, log=lambda: ""):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{log()}")
        time.sleep(0.1)


class Process:
    """A worker process whose output is collected line by line."""

    def __init__(self, args):
        env = {**os.environ, "SHOP_DATABASE": str(connection.settings_dict["NAME"])}
        self.args = args
        self.popen = subprocess.Popen(
            args,
            cwd=MANAGE_PY.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self):
        return f"--- output of {' '.join(map(str, self.args))}:\n" + "\n".join(self.lines)

    def wait_exit(self, timeout=WAIT_S):
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise AssertionError(f"still running after {timeout} s\n{self.output()}")
        self.reader.join(STOP_S)
        return code

    def stop(self):
        """SIGTERM, then the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.wait_exit(STOP_S)

    def kill(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


class LiveStrataTestCase(TransactionTestCase):
    def setUp(self):
        self.topic = f"orders-test-{uuid.uuid4().hex[:12]}"
        call_command("create_topics", topic=self.topic, partitions=3, stdout=open(os.devnull, "w"))
        settings_override = self.settings(ORDERS_TOPIC=self.topic)
        settings_override.enable()
        self.addCleanup(settings_override.disable)

    def order_worker(self, *args):
        worker = Process([sys.executable, MANAGE_PY, "consume_orders", "--topic", self.topic, *args])
        self.addCleanup(worker.kill)
        return worker

    def place_order(self, customer, total_cents):
        response = self.client.post(
            "/orders/", {"customer": customer, "total_cents": total_cents}, content_type="application/json"
        )
        self.assertEqual(response.status_code, 201, response.content)
        return response.json()

    def committed(self, group, topic=None):
        """The group's committed offsets, {partition: offset}, of the partitions it committed."""
        topic = topic or self.topic
        consumer = Consumer({"bootstrap.servers": settings.STRATA_BOOTSTRAP, "group.id": group})
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            offsets = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in offsets if tp.offset >= 0}

    @staticmethod
    def next_offsets(placed):
        """Per partition, the offset after the last of these orders' events: what a group that processed
        them all has committed."""
        ends = {}
        for order in placed:
            event = order["event"]
            ends[event["partition"]] = max(ends.get(event["partition"], 0), event["offset"] + 1)
        return ends


class OrderEventTests(LiveStrataTestCase):
    def test_an_order_is_published_processed_and_committed(self):
        group = f"order-worker-{uuid.uuid4().hex[:8]}"
        worker = self.order_worker("--group", group)
        placed = [self.place_order("ada", 1250), self.place_order("grace", 990)]
        for order in placed:
            self.assertEqual(order["event"]["topic"], self.topic)
            self.assertIsNone(order["fulfilled_at"])

        wait_for(
            "the worker to fulfil both orders",
            lambda: Order.objects.filter(fulfilled_at__isnull=False).count() == 2,
            log=worker.output,
        )
        events = ProcessedEvent.objects.filter(group=group)
        self.assertEqual(
            sorted((e.partition, e.offset, e.key) for e in events),
            sorted((o["event"]["partition"], o["event"]["offset"], o["id"]) for o in placed),
        )
        # The worker commits each event after its transaction: the group's offsets reach past both.
        expected = self.next_offsets(placed)
        wait_for(f"committed offsets {expected}", lambda: self.committed(group) == expected, log=worker.output)

        self.assertEqual(worker.stop(), 0, worker.output())

    def test_the_event_is_the_order_as_json_keyed_by_its_id(self):
        placed = self.place_order("linus", 4200)
        consumer = Consumer(
            {"bootstrap.servers": settings.STRATA_BOOTSTRAP, "group.id": f"peek-{uuid.uuid4().hex[:8]}"}
        )
        event = placed["event"]
        consumer.assign([TopicPartition(self.topic, event["partition"], event["offset"])])
        try:
            msg = None
            deadline = time.monotonic() + WAIT_S
            while msg is None or msg.error():
                self.assertLess(time.monotonic(), deadline, "the event was not read back")
                msg = consumer.poll(1.0)
        finally:
            consumer.close()
        self.assertEqual(msg.key().decode(), placed["id"])
        body = json.loads(msg.value())
        self.assertEqual(body["type"], "order.created")
        self.assertEqual((body["id"], body["customer"], body["total_cents"]), (placed["id"], "linus", 4200))

    def test_a_bad_order_is_refused_and_nothing_is_published(self):
        for body in ["not json", json.dumps({"customer": "x"}), json.dumps({"customer": "", "total_cents": 1})]:
            response = self.client.post("/orders/", body, content_type="application/json")
            self.assertEqual(response.status_code, 400, body)
        self.assertEqual(Order.objects.count(), 0)

    def test_an_order_whose_event_strata_does_not_confirm_is_answered_503(self):
        # A producer pointed where nothing listens, whose records expire after 2 s: the view must say that
        # the order was saved but not published, not pretend it was.
        unreachable = {**settings.KAFKA_PRODUCER, "bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 2000}
        events._producer = None
        self.addCleanup(setattr, events, "_producer", None)
        with self.settings(KAFKA_PRODUCER=unreachable):
            response = self.client.post(
                "/orders/", {"customer": "nobody", "total_cents": 1}, content_type="application/json"
            )
        self.assertEqual(response.status_code, 503, response.content)
        self.assertIn("event not published", response.json()["error"])
        self.assertEqual(Order.objects.filter(public_id=response.json()["id"]).count(), 1)

    def test_replay_from_an_earlier_offset(self):
        placed = [self.place_order(f"customer-{i}", 100 + i) for i in range(3)]
        where = sorted(f"{self.topic}[{o['event']['partition']}]@{o['event']['offset']}" for o in placed)
        group = f"order-worker-{uuid.uuid4().hex[:8]}"

        first = self.order_worker("--group", group, "--max-events", "3")
        self.assertEqual(first.wait_exit(), 0, first.output())
        self.assertEqual(sorted(line.split()[1] for line in first.lines if line.startswith("processed")), where)
        self.assertEqual(self.committed(group), self.next_offsets(placed))

        # The same group, rewound to offset 0 of every partition: the events come again, in their order,
        # and the worker recognises each one as already processed.
        replay = self.order_worker("--group", group, "--from-offset", "0", "--max-events", "3")
        self.assertEqual(replay.wait_exit(), 0, replay.output())
        self.assertEqual(sorted(line.split()[1] for line in replay.lines if line.startswith("duplicate")), where)
        self.assertFalse([line for line in replay.lines if line.startswith("processed")], replay.output())
        self.assertEqual(self.committed(group), self.next_offsets(placed))
        self.assertEqual(ProcessedEvent.objects.filter(group=group).count(), 3)

        # Another group reads the same events independently, from the start.
        audit = self.order_worker("--group", f"audit-{uuid.uuid4().hex[:8]}", "--max-events", "3")
        self.assertEqual(audit.wait_exit(), 0, audit.output())
        self.assertEqual(sorted(line.split()[1] for line in audit.lines if line.startswith("processed")), where)


class CeleryTests(LiveStrataTestCase):
    def test_a_celery_task_round_trips_through_strata(self):
        worker = Process(
            [
                sys.executable, "-m", "celery", "-A", "shop", "worker",
                "--pool", "solo", "--loglevel", "info",
                "--without-heartbeat", "--without-gossip", "--without-mingle",
            ]
        )
        self.addCleanup(worker.kill)
        order = self.place_order("margaret", 5000)
        wait_for(
            "the Celery worker to send the receipt",
            lambda: Order.objects.get(public_id=order["id"]).receipt_sent_at is not None,
            log=worker.output,
        )
        self.assertTrue(any(f"receipt for order {order['id']}: sent" in line for line in worker.lines), worker.output())
        # The task came through Strata: the topic `celery`, read by the group kombu names after the queue,
        # which committed past it when the task was acknowledged.
        wait_for(
            "the Celery queue's committed offset",
            lambda: self.committed("celery-consumer-group", "celery").get(0, 0) > 0,
            log=worker.output,
        )
        self.assertEqual(worker.stop(), 0, worker.output())
