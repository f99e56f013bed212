"""Billing pages: dashboards, exports and the request log (dashboards), budgets and alerts (budgets)."""
