"""ASGI entry point: ``uvicorn sampleproject.asgi:application``.

HTTP goes to Django; WebSockets under ``/ws/`` go to Channels consumers, with the session user
attached and the Origin checked against ALLOWED_HOSTS.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sampleproject.settings")

# Django must be set up before anything that imports models (consumers, auth middleware).
django_asgi_app = get_asgi_application()

from gemnar_cluster.metrics import start_metrics_endpoint  # noqa: E402

# Only the server imports this module (never manage.py), so only it serves metrics.
start_metrics_endpoint()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from sampleproject.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
