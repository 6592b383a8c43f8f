"""Tests of the stray sweep: what exists on a platform but not in the stack's state."""
