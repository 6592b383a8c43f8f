"""A bounded load through the lab controller's Nginx that notes when each worker first answers.

Run inside the lab stack's network namespace (only there does the controller's address exist):
``python -m bench.lab_watch SITE MAX_SECONDS``. GETs ``/whoami/`` one at a time, paced, until
its stdin closes or MAX_SECONDS pass; prints one JSON line ``{"worker", "at"}`` the first time
each worker answers (``at``: when that answer arrived, ``time.time()``), and at the end
``{"ok", "failed", "failures"}``. ``bench.lab_reaction`` reads the lines as they come.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import httpx

from tests.support.resend import get_resending

PACE_S = 0.05


def watch(site: str, max_s: float) -> dict[str, object]:
    stop = threading.Event()

    def stop_at_end_of_input() -> None:
        sys.stdin.read()  # the bench closing our stdin stops the load
        stop.set()

    threading.Thread(target=stop_at_end_of_input, daemon=True).start()
    seen: set[str] = set()
    failures: list[str] = []
    ok, end = 0, time.monotonic() + max_s
    # verify=False: the lab controller's certificate is self-signed, as a new prod one is.
    with httpx.Client(base_url=site, verify=False, timeout=15) as client:
        while not stop.is_set() and time.monotonic() < end:
            try:
                response, _ = get_resending(client, "/whoami/")
                if response.status_code == 200:
                    ok += 1
                    worker = str(response.json().get("worker"))
                    if worker not in seen:
                        seen.add(worker)
                        print(json.dumps({"worker": worker, "at": round(time.time(), 3)}),
                              flush=True)
                else:
                    failures.append(f"HTTP {response.status_code}")
            except httpx.HTTPError as error:
                failures.append(repr(error))
            stop.wait(PACE_S)
    return {"ok": ok, "failed": len(failures), "failures": failures[:10]}


if __name__ == "__main__":
    print(json.dumps(watch(sys.argv[1], float(sys.argv[2]))), flush=True)
