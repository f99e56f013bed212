"""API v1 endpoints of the billing app (included under /api/v1/ by controlplane/urls.py)."""

from django.urls import path

from billing.api.views import SpendIngestView

urlpatterns = [
    path("ingest/spend", SpendIngestView.as_view(), name="ingest-spend"),
]
