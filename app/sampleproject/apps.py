"""App config for the sample project's own models, templates and static files."""

from django.apps import AppConfig


class SampleProjectConfig(AppConfig):
    """The project package doubles as its only app."""

    name = "sampleproject"
    verbose_name = "Gemnar sample project"
    default_auto_field = "django.db.models.BigAutoField"
