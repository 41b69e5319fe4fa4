"""`manage.py create_topics`: creates the order events topic and the Celery queue's topic if they do not
exist yet.

kombu creates a queue's topic itself when a worker declares the queue, but subscribes without waiting for
it, so a worker's first start logs "Subscribed topic not available" once; made here, the topic is there.
"""

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

# How long to wait for Strata to create a topic.
CREATE_TIMEOUT_S = 30
# Celery's default queue, whose topic kombu names after it.
CELERY_QUEUE = "celery"


class Command(BaseCommand):
    help = "Create the order events topic (settings.ORDERS_TOPIC) and the Celery queue's topic, if missing."

    def add_arguments(self, parser):
        parser.add_argument("--topic", default=settings.ORDERS_TOPIC)
        parser.add_argument("--partitions", type=int, default=settings.ORDERS_TOPIC_PARTITIONS)

    def handle(self, *args, topic, partitions, **options):
        admin = AdminClient({"bootstrap.servers": settings.STRATA_BOOTSTRAP})
        # replication_factor -1: the broker's default.replication.factor.
        topics = [
            NewTopic(topic, num_partitions=partitions, replication_factor=-1),
            # One partition, as kombu makes it.
            NewTopic(CELERY_QUEUE, num_partitions=1, replication_factor=-1),
        ]
        futures = admin.create_topics(topics)
        for new in topics:
            try:
                futures[new.topic].result(CREATE_TIMEOUT_S)
            except KafkaException as e:
                if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise CommandError(f"creating {new.topic}: {e}") from e
                self.stdout.write(f"topic {new.topic} exists")
                continue
            self.stdout.write(f"topic {new.topic} created with {new.num_partitions} partitions")
