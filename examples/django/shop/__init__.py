"""The shop project: settings, URLs and the Celery app.

Importing the Celery app here makes `@shared_task` functions bind to it in every process that loads Django
(web, order worker, Celery worker), as Celery's Django guide recommends.
"""

from .celery import app as celery_app

__all__ = ("celery_app",)
