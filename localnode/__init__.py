"""Local nodes: the controller and workers of the `local` stack as real processes on 127.x.

A local node is what a Vultr instance plus cloud-init is in prod: the same rendered service
configurations, run as plain processes under a per-node directory of the project's state.
Only how a node comes to exist differs; everything that acts on a node afterwards (membership,
readiness, drain) goes over SSH exactly as in prod.
"""
