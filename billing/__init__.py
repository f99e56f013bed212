"""Billing: spend ingestion, rollups, budgets, forecasts, alerts, Datadog mirror, dashboards, exports."""
