"""Reusable Django app serving a cheap, uncached ``/health/`` for load-balancer probes."""
