"""What the shop stores: orders, and which order events each consumer group has processed."""

import uuid

from django.db import models


class Order(models.Model):
    # The id events and tasks carry: unlike the row id, it is never reused by another database (a test run
    # that flushed its tables, say), so a stale event or task can never touch the wrong order.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    customer = models.CharField(max_length=200)
    total_cents = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    # Set by the order worker (`manage.py consume_orders`) from the `order.created` event.
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    # Set by the Celery task `send_receipt`.
    receipt_sent_at = models.DateTimeField(null=True, blank=True)

    def as_json(self):
        return {
            "id": str(self.public_id),
            "customer": self.customer,
            "total_cents": self.total_cents,
            "created_at": self.created_at.isoformat(),
            "fulfilled_at": self.fulfilled_at.isoformat() if self.fulfilled_at else None,
            "receipt_sent_at": self.receipt_sent_at.isoformat() if self.receipt_sent_at else None,
        }


class ProcessedEvent(models.Model):
    """One event a consumer group has processed, written in the same transaction as its effect.

    Strata delivers at least once: a worker that dies after processing an event and before committing its
    offset gets the event again. Finding the event here makes the second delivery a no-op.
    """

    group = models.CharField(max_length=200)
    topic = models.CharField(max_length=249)
    partition = models.IntegerField()
    offset = models.BigIntegerField()
    key = models.CharField(max_length=200)
    processed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "topic", "partition", "offset"], name="one_per_offset"),
        ]
