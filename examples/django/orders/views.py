"""The orders API: `POST /orders/` takes an order, publishes `order.created` and queues the receipt;
`GET /orders/` and `GET /orders/<id>/` show orders and how far the workers got with them.

A JSON API without sessions or cookies, so no CSRF middleware is installed (settings.MIDDLEWARE).
"""

import json
import logging

from confluent_kafka import KafkaException
from django.conf import settings
from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_http_methods

from . import events
from .models import Order
from .tasks import send_receipt

log = logging.getLogger(__name__)

# Listing shows the newest orders only.
ORDERS_LISTED_MAX = 50


@require_http_methods(["GET", "POST"])
def orders(request):
    if request.method == "GET":
        newest = Order.objects.order_by("-created_at")[:ORDERS_LISTED_MAX]
        return JsonResponse({"orders": [o.as_json() for o in newest]})

    try:
        body = json.loads(request.body)
        customer = body["customer"]
        total_cents = body["total_cents"]
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'expected JSON {"customer": "...", "total_cents": N}'}, status=400)
    if not isinstance(customer, str) or not customer or len(customer) > 200:
        return JsonResponse({"error": "customer: a non-empty string of at most 200 characters"}, status=400)
    if not isinstance(total_cents, int) or isinstance(total_cents, bool) or not 0 < total_cents < 2**31:
        return JsonResponse({"error": "total_cents: a positive integer"}, status=400)

    order = Order.objects.create(customer=customer, total_cents=total_cents)
    event = {"type": "order.created", **order.as_json()}
    try:
        partition, offset = events.publish(settings.ORDERS_TOPIC, str(order.public_id), event)
    except KafkaException as e:
        # The order is saved but nobody will hear of it: say so. (Publishing from the same transaction as
        # the insert needs an outbox table and a relay, which this example leaves out.)
        log.error("order %s saved, its event not published: %s", order.public_id, e)
        return JsonResponse({"error": f"order saved, event not published: {e}", **order.as_json()}, status=503)
    # Queued once the order is committed, so the Celery worker finds it.
    transaction.on_commit(lambda: send_receipt.delay(str(order.public_id)))
    log.info("order %s published to %s[%d]@%d", order.public_id, settings.ORDERS_TOPIC, partition, offset)
    return JsonResponse(
        {**order.as_json(), "event": {"topic": settings.ORDERS_TOPIC, "partition": partition, "offset": offset}},
        status=201,
    )


@require_http_methods(["GET"])
def order(request, public_id):
    return JsonResponse(get_object_or_404(Order, public_id=public_id).as_json())
