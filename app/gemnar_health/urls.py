"""``include("gemnar_health.urls")`` for projects that route the endpoint themselves."""

from django.urls import path

from gemnar_health.views import health

app_name = "gemnar_health"
urlpatterns = [path("", health, name="health")]
