"""Cluster plumbing for stateless Django workers: env-driven settings, cache, proxy trust."""
