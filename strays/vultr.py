"""Vultr's nodes: the account's instances tagged with the stack (``gemnar-stack-<stack>``).

``components.instance`` tags every instance with its stack, its role (``gemnar-worker``,
``gemnar-controller``) and ``gemnar``; the list asks Vultr's API (v2) for the stack's tag only,
so another stack's instances, or an untagged one, are never candidates. Removing one is the
API's instance delete, as the provider's own delete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from strays.core import Node

API = "https://api.vultr.com/v2"
PAGE = 100
WORKER_TAG = "gemnar-worker"


def stack_tag(stack: str) -> str:
    return f"gemnar-stack-{stack}"


def node(instance: dict[str, Any]) -> Node:
    """An instance as a node: a worker only when its role tag and label both say so."""
    tags = instance.get("tags") or []
    label = str(instance.get("label", ""))
    worker = WORKER_TAG in tags and label.startswith(f"{WORKER_TAG}-")
    return Node(str(instance["id"]), "worker" if worker else "other", label)


@dataclass(frozen=True)
class VultrInstances:
    """The stack's instances through Vultr's API; ``client`` carries the key (``client()``)."""

    stack: str
    http: httpx.Client

    def nodes(self) -> list[Node]:
        found: list[Node] = []
        cursor = ""
        while True:
            params = {"tag": stack_tag(self.stack), "per_page": str(PAGE)}
            if cursor:
                params["cursor"] = cursor
            response = self.http.get("/instances", params=params)
            response.raise_for_status()
            body = response.json()
            found += [node(i) for i in body.get("instances") or []
                      if stack_tag(self.stack) in (i.get("tags") or [])]
            cursor = ((body.get("meta") or {}).get("links") or {}).get("next") or ""
            if not cursor:
                return found

    def remove(self, target: Node) -> None:
        response = self.http.delete(f"/instances/{target.key}")
        if response.status_code != 404:  # already gone is what removal wants
            response.raise_for_status()


def client(api_key: str, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    return httpx.Client(base_url=API, headers={"Authorization": f"Bearer {api_key}"},
                        timeout=30, transport=transport)
