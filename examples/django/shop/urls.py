"""URLs: the orders API."""

from django.urls import path

from orders import views

urlpatterns = [
    path("orders/", views.orders, name="orders"),
    path("orders/<uuid:public_id>/", views.order, name="order"),
]
