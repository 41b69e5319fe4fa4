"""The Celery app, with Strata as its broker through kombu's Kafka transport (`confluentkafka://`).

Each Celery queue is a Strata topic; a worker reads it in the consumer group `<queue>-consumer-group` and
acknowledging a task commits the group's offset. kombu's transport has no fanout exchange, so the features
built on broadcast (remote control: `celery inspect`, `celery control`) are turned off in settings.py.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("shop")
# Every `CELERY_*` Django setting configures Celery (CELERY_BROKER_URL is `broker_url`, ...).
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
