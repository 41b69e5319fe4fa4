"""Celery tasks; their messages travel through Strata (see shop/celery.py)."""

import logging

from celery import shared_task
from django.utils import timezone

from .models import Order

log = logging.getLogger(__name__)


@shared_task
def send_receipt(public_id):
    """Sends the receipt of an order (here: records that it was sent)."""
    updated = Order.objects.filter(public_id=public_id, receipt_sent_at__isnull=True).update(
        receipt_sent_at=timezone.now()
    )
    log.info("receipt for order %s: %s", public_id, "sent" if updated else "already sent or no such order")
    return updated
