"""Routing: deployments, policies, experiments, the bundle compiler (Django side) and the engine/proxy (Django-free)."""
