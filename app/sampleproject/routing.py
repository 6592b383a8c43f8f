"""WebSocket routes, all under ``/ws/``."""

from django.urls import path

from sampleproject.consumers import EchoConsumer

websocket_urlpatterns = [path("ws/echo/", EchoConsumer.as_asgi())]
