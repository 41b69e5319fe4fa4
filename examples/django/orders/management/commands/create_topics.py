"""`manage.py create_topics`: creates the order events topic if it does not exist yet."""

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

# How long to wait for Strata to create the topic.
CREATE_TIMEOUT_S = 30


class Command(BaseCommand):
    help = "Create the order events topic (settings.ORDERS_TOPIC) if it does not exist."

    def add_arguments(self, parser):
        parser.add_argument("--topic", default=settings.ORDERS_TOPIC)
        parser.add_argument("--partitions", type=int, default=settings.ORDERS_TOPIC_PARTITIONS)

    def handle(self, *args, topic, partitions, **options):
        admin = AdminClient({"bootstrap.servers": settings.STRATA_BOOTSTRAP})
        # replication_factor -1: the broker's default.replication.factor.
        future = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=-1)])[topic]
        try:
            future.result(CREATE_TIMEOUT_S)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise CommandError(f"creating {topic}: {e}") from e
            self.stdout.write(f"topic {topic} exists")
            return
        self.stdout.write(f"topic {topic} created with {partitions} partitions")
