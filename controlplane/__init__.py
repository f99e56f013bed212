"""Control plane plumbing, tenancy (teams, features, memberships), audit log and fleet."""

from controlplane.celery import app as celery_app

__all__ = ["celery_app"]
