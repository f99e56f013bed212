"""Pages of the routing app (included at the site root by controlplane/urls.py)."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
