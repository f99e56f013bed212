"""API v1 endpoints of the billing app (included under /api/v1/ by controlplane/urls.py)."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
