"""Settings for the sample project: cluster settings from GEMNAR_* variables, plus the app list.

Configuration comes only from the environment; see app/README.md for every variable.
"""

import os
from pathlib import Path

from gemnar_cluster.settings_helper import cluster_settings

BASE_DIR = Path(__file__).resolve().parent.parent

_cluster = cluster_settings(os.environ, base_dir=BASE_DIR)
# The same PostgreSQL backend, with query counts and timings for Prometheus (django-prometheus).
_cluster["DATABASES"]["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"
globals().update(_cluster)

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_prometheus",
    "gemnar_health",
    "sampleproject",
]

MIDDLEWARE = [
    # First, so probes skip sessions, CSRF and HTTPS redirects and get their own Host rule.
    "gemnar_health.middleware.HealthCheckMiddleware",
    # Request metrics start after the health check: the controller's probes (one a second
    # per worker) would otherwise swamp the latency histograms.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "gemnar_cluster.middleware.TrustedProxyMiddleware",
    # A database outage is a 503 with Retry-After, logged once per burst.
    "gemnar_cluster.outage.DatabaseOutageMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The worker's own collected static files, for the controller's Nginx to fetch and cache
    # (gemnar_cluster.static says why WhiteNoise); ahead of sessions, which they never need.
    "gemnar_cluster.static.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "sampleproject.urls"
ASGI_APPLICATION = "sampleproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
# UTC matches the database role's default, so Django need not SET TIME ZONE per connection.
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
