"""WebSocket echo with a cluster-wide broadcast group.

A text frame is echoed back as is. A JSON object ``{"broadcast": "..."}`` is instead sent to the
``broadcast`` group through the Redis channel layer, so every socket on every worker receives
``{"type": "broadcast", "text": ..., "from": <sending worker>, "to": <receiving worker>}``.
"""

from __future__ import annotations

import json
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

BROADCAST_GROUP = "broadcast"


def _broadcast_text(text_data: str) -> str | None:
    if not text_data.startswith("{"):
        return None
    try:
        message = json.loads(text_data)
    except ValueError:
        return None
    if isinstance(message, dict) and isinstance(message.get("broadcast"), str):
        return message["broadcast"]
    return None


class EchoConsumer(AsyncWebsocketConsumer):
    """Echoes frames; relays ``{"broadcast": ...}`` to every connected socket in the cluster."""

    async def connect(self) -> None:
        await self.channel_layer.group_add(BROADCAST_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(BROADCAST_GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if bytes_data is not None:
            await self.send(bytes_data=bytes_data)
            return
        if text_data is None:
            return
        text = _broadcast_text(text_data)
        if text is None:
            await self.send(text_data=text_data)
            return
        await self.channel_layer.group_send(
            BROADCAST_GROUP,
            {"type": "broadcast.message", "text": text, "from": settings.GEMNAR_WORKER_NAME},
        )

    async def broadcast_message(self, event: dict[str, Any]) -> None:
        """Handler for ``broadcast.message`` events from the channel layer."""
        await self.send(
            text_data=json.dumps(
                {
                    "type": "broadcast",
                    "text": event["text"],
                    "from": event["from"],
                    "to": settings.GEMNAR_WORKER_NAME,
                }
            )
        )
