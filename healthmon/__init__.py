"""The controller's health monitor: active checks that take failed workers out of Nginx.

Open-source Nginx has only passive checks, so the controller probes every member's
``/health/`` itself and re-renders the upstream list when a worker crosses its rise or fall
threshold. When every member is down the renderer routes to all of them (fail open).
"""
