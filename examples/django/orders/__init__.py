"""Orders: the view that takes an order and publishes `order.created`, the worker that fulfils orders from
those events, and the Celery task that sends the receipt."""
