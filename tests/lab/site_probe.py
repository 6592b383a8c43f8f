"""What a person does with the lab site, run inside the lab's namespace (``python -m
tests.lab.site_probe SITE USER PASSWORD``): prints one JSON object of what it saw.

A page, ``/health/``, a login session asked for across workers, a WebSocket echo, a static
file and an uploaded media file fetched back through Nginx. It runs in the namespace because
only there does the controller's lab address exist; the test asserts on its findings.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import sys
import time
from typing import Any

import httpx
import websockets

# The lab controller's certificate is self-signed, as a new prod one is until issued.
TIMEOUT_S = 20


def probe(site: str, username: str, password: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with httpx.Client(base_url=site, verify=False, timeout=TIMEOUT_S,
                      headers={"Origin": site}) as client:
        page = client.get("/")
        seen["page"] = {"status": page.status_code, "length": len(page.text)}
        health = client.get("/health/")
        seen["health"] = {"status": health.status_code, "body": health.text[:2000]}
        css = re.search(r'href="(/static/[^"]+\.css)"', page.text)
        if css:
            asset = client.get(css.group(1))
            again = client.get(css.group(1))
            seen["static"] = {"path": css.group(1), "status": asset.status_code,
                              "server_header": asset.headers.get("server", ""),
                              "cache_control": asset.headers.get("cache-control", ""),
                              "content_type": asset.headers.get("content-type", ""),
                              "length": len(asset.content),
                              "cache_status": [asset.headers.get("x-cache-status", ""),
                                               again.headers.get("x-cache-status", "")]}
        client.get("/accounts/login/")
        login = client.post(
            "/accounts/login/",
            data={"username": username, "password": password,
                  "csrfmiddlewaretoken": client.cookies.get("csrftoken", "")},
            headers={"Referer": f"{site}/accounts/login/"},
        )
        seen["login"] = {"status": login.status_code, "body": login.text[:300]}
        workers: dict[str, Any] = {}
        for _ in range(16):
            me = client.get("/whoami/")
            if me.status_code == 200:
                body = me.json()
                workers[str(body.get("worker"))] = {
                    "authenticated": body.get("authenticated"),
                    "username": body.get("username")}
        seen["whoami"] = workers
        client.get("/upload/")
        payload = b"gemnar lab media " + str(time.time()).encode()
        upload = client.post(
            "/upload/",
            files={"file": ("lab.txt", payload, "text/plain")},
            data={"csrfmiddlewaretoken": client.cookies.get("csrftoken", "")},
            headers={"Referer": f"{site}/upload/"},
        )
        seen["upload"] = {"status": upload.status_code, "body": upload.text[:300]}
        if upload.status_code == 201:
            media = client.get(upload.json()["url"])
            seen["media"] = {"status": media.status_code, "same": media.content == payload,
                             "url": upload.json()["url"]}
    seen["websocket"] = asyncio.run(_echo(site))
    return seen


async def _echo(site: str) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    url = site.replace("https://", "wss://") + "/ws/echo/"
    try:
        async with websockets.connect(url, ssl=context, origin=site,  # type: ignore[arg-type]
                                      open_timeout=TIMEOUT_S) as socket:
            await socket.send(json.dumps({"message": "ping through the lab"}))
            return str(await asyncio.wait_for(socket.recv(), TIMEOUT_S))
    except Exception as failed:  # reported, not raised: the test says what failed
        return f"failed: {failed!r}"


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], sys.argv[2], sys.argv[3])))
