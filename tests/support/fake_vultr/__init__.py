"""A stand-in for Vultr's provider plugin (``vultr`` 2.27.1), for the real engine in tests.

The upstream plugin cannot be built here (its Go module is refused by the proxy), and
Pulumi's Python mocks bypass the engine. This plugin serves the same gRPC ResourceProvider
protocol as ``tools/command_provider`` does for ``command``, and replaces only Vultr's API:
what a create returns is derived deterministically from the inputs (``resources.py``). It is
registered only in a throwaway Pulumi home made by a test (``engine.py``), never in the
project's own, so no real stack can ever reach it.
"""

PROVIDER_NAME = "vultr"
# The version the ediri_vultr SDK asks the engine for (requirements.txt pins 2.27.1).
PROVIDER_VERSION = "2.27.1"
