"""Threads that run for the length of a ``with`` block: loads and watchers in tests and benches.

A subclass makes its daemon threads and the ``_stop`` event they watch; entering starts them,
leaving sets ``_stop`` and joins each within ``join_timeout_s`` (a thread blocked longer is
left behind as a daemon rather than hanging the test).
"""

from __future__ import annotations

import threading
from typing import Self


class Background:
    join_timeout_s = 30.0
    _stop: threading.Event
    _threads: list[threading.Thread]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.join_timeout_s)
