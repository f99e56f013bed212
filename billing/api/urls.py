"""API v1 endpoints of the billing app (included under /api/v1/ by controlplane/urls.py)."""

from django.urls import path

from billing.api.views import ingest_spend_view

urlpatterns = [
    path("ingest/spend", ingest_spend_view, name="ingest-spend"),
]
