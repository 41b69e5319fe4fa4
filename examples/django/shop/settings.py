"""Settings of the shop example. Everything that differs between a laptop, the compose stack and the tests
comes from the environment:

- `STRATA_BOOTSTRAP`: Strata's Kafka listeners, `host:port[,host:port...]` (default `localhost:9092`).
- `SHOP_DATA_DIR`: where the SQLite database lives (default `./data`).
- `SHOP_DATABASE`: the database file itself, if not `$SHOP_DATA_DIR/shop.sqlite3` (the tests point their
  worker processes at the test database with it).
- `SHOP_ORDERS_TOPIC`: the topic of order events (default `orders`).
- `SHOP_SECRET_KEY`, `SHOP_DEBUG`, `SHOP_ALLOWED_HOSTS`: the usual Django knobs.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SHOP_DATA_DIR", BASE_DIR / "data"))
DATA_DIR.mkdir(parents=True, exist_ok=True)

# An example's key; a deployment sets its own.
SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "shop-example-not-secret")
DEBUG = os.environ.get("SHOP_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("SHOP_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "orders",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DATABASE", DATA_DIR / "shop.sqlite3"),
        # The web process, the order worker and the Celery worker write to one file: WAL lets readers go on
        # while one writes, IMMEDIATE takes the write lock at BEGIN (no upgrade deadlocks), and a writer
        # waits up to 20 s for the lock instead of failing at once.
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL;",
        },
        # A file, not SQLite's default in-memory test database: the tests' worker processes open it too.
        "TEST": {"NAME": DATA_DIR / "test-shop.sqlite3"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# --- Strata --------------------------------------------------------------------------------------------

STRATA_BOOTSTRAP = os.environ.get("STRATA_BOOTSTRAP", "localhost:9092")
ORDERS_TOPIC = os.environ.get("SHOP_ORDERS_TOPIC", "orders")
# Order events are keyed by order id, so one order's events stay in one partition, in order; three
# partitions let up to three order workers share the load.
ORDERS_TOPIC_PARTITIONS = 3

# The producer of the web process. Idempotence makes librdkafka's retries unable to duplicate or reorder an
# event; acks=all makes the broker answer only once every in-sync replica has it.
KAFKA_PRODUCER = {
    "bootstrap.servers": STRATA_BOOTSTRAP,
    "client.id": "shop-web",
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
}

# --- Celery, with Strata as its broker ---------------------------------------------------------------

# kombu takes one host from the URL; `bootstrap.servers` below gives librdkafka all of them.
CELERY_BROKER_URL = "confluentkafka://" + STRATA_BOOTSTRAP.split(",")[0]
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "kafka_common_config": {"bootstrap.servers": STRATA_BOOTSTRAP},
    # Each Celery queue is a topic, created on first use: -1 takes the broker's default.replication.factor
    # (3 on the deploy/ cluster).
    "replication_factor": -1,
    # How long one poll of a queue waits for a task: short, so that a worker stops promptly.
    "wait_time_seconds": 1,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# kombu's Kafka transport has no fanout exchange, which Celery's remote control (`celery inspect`,
# `celery control`) is built on.
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
# The task writes its outcome to the database; no result backend is needed.
CELERY_TASK_IGNORE_RESULT = True
# kombu commits the queue's consumer position when a task is acknowledged: acknowledging after the task ran
# (acks_late) and fetching one task at a time means a worker that dies mid-task gets it again.
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"orders": {"handlers": ["console"], "level": "INFO"}},
}
