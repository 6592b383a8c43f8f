"""App config for gemnar_health."""

from django.apps import AppConfig


class GemnarHealthConfig(AppConfig):
    """Nothing to set up: the checks read settings at request time."""

    name = "gemnar_health"
    verbose_name = "Gemnar health checks"
