"""HTTP routes of the sample project; the memory-hold debug routes exist only when enabled."""

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, path

from sampleproject import views

# A database error raised outside a view (say, saving a session) is a 503 too.
handler500 = "gemnar_cluster.outage.server_error"

urlpatterns: list[URLPattern] = [
    path("", views.index, name="index"),
    path("whoami/", views.whoami, name="whoami"),
    path("cached/", views.cached, name="cached"),
    path("upload/", views.upload, name="upload"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]

if settings.GEMNAR_LOCAL_DEBUG_MEMORY:
    urlpatterns += [
        path("debug/hold-memory/", views.hold_memory, name="hold-memory"),
        path("debug/release-memory/", views.release_memory, name="release-memory"),
    ]
