"""Suite-wide settings: Hypothesis without its per-example deadline.

On two cores shared by several test runs a pure example takes 250 ms now and then, and the
default 200 ms deadline turns that into a failure that says nothing about the code (seen in
tests/lab/test_lab_pure.py under load). Examples stay bounded by ``max_examples``.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("gemnar", deadline=None)
settings.load_profile("gemnar")
