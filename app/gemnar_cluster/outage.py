"""Answer a database outage with a short 503 and ``Retry-After``, and log it once per burst.

Without this, every request during a PgBouncer or PostgreSQL outage is a bare "Server Error
(500)" that clients and Nginx cannot tell from a bug, and every one writes a traceback to the
log (tens of thousands of lines in a 20 s outage). Here a database connection error becomes
``503 Service Unavailable`` with ``Retry-After``; the first failure of a burst is logged in one
line, and the first new database connection afterwards logs how many requests the burst cost.

Two entry points, because Django turns exceptions into responses at every middleware layer:
``DatabaseOutageMiddleware.process_exception`` for errors raised by views, and
``server_error`` (the project's ``handler500``) for errors raised by other middleware, such as
the session middleware saving a session.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db.backends.signals import connection_created
from django.db.utils import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin
from django.views import defaults

logger = logging.getLogger("gemnar.outage")

DATABASE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)
DEFAULT_RETRY_AFTER_S = 5
PAGE = (
    "<!doctype html><title>Temporarily unavailable</title>"
    "<h1>Temporarily unavailable</h1>"
    "<p>The site cannot reach its database right now. Please try again in a few seconds.</p>\n"
)


@dataclass
class BurstLog:
    """Counts failures in the current burst; says when one starts and when one ends."""

    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    started: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self) -> bool:
        """Record a failure; True for the first of a burst."""
        with self.lock:
            self.failures += 1
            if self.failures == 1:
                self.started = self.clock()
                return True
            return False

    def succeeded(self) -> tuple[int, float] | None:
        """Record a success; ``(failures, seconds)`` of the burst it ends, if one was open."""
        if not self.failures:  # the common case, without taking the lock
            return None
        with self.lock:
            if not self.failures:
                return None
            ended = (self.failures, self.clock() - self.started)
            self.failures = 0
            return ended


BURSTS = BurstLog()


def retry_after_s() -> int:
    return int(getattr(settings, "GEMNAR_DB_RETRY_AFTER", DEFAULT_RETRY_AFTER_S))


def unavailable_response(exc: BaseException, request: HttpRequest) -> HttpResponse:
    """The 503 for ``exc``; logs one line if it opens a burst, none otherwise."""
    if BURSTS.failed():
        logger.error(
            "database unavailable (%s: %s) at %s %s; answering 503 until it is back",
            type(exc).__name__,
            str(exc).strip().splitlines()[0] if str(exc).strip() else "",
            request.method,
            request.path,
        )
    response = HttpResponse(PAGE, status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(retry_after_s())
    response["Cache-Control"] = "no-store"
    # Django logs every 5xx response with its traceback unless told it has been logged.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def database_back(sender: object, **kwargs: object) -> None:
    """``connection_created`` receiver: a new connection ends the current burst, if any."""
    ended = BURSTS.succeeded()
    if ended:
        logger.warning(
            "database reachable again after %d failed requests in %.1fs", ended[0], ended[1]
        )


# Requests that never touch the database say nothing about it; a new connection does.
connection_created.connect(database_back, dispatch_uid="gemnar_cluster.outage.database_back")


class DatabaseOutageMiddleware(MiddlewareMixin):
    """Turns database connection errors from views into a 503 with ``Retry-After``."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DATABASE_ERRORS):
            return unavailable_response(exception, request)
        return None


def server_error(request: HttpRequest) -> HttpResponseBase:
    """``handler500``: a database error anywhere in the stack is a 503, anything else a 500."""
    exc = sys.exc_info()[1]
    if isinstance(exc, DATABASE_ERRORS):
        return unavailable_response(exc, request)
    return defaults.server_error(request)
