"""Navigation for the base template: each role sees the pages it can use (controlplane.permissions decides)."""

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest

from controlplane.permissions import Action, can, can_anywhere


def _everyone(user: Any) -> bool:
    return True


def _tuners(user: Any) -> bool:
    """MLOps engineers and admins: the routing pages they tune thresholds and run experiments on."""
    return can_anywhere(user, Action.EDIT_ROUTING)


def _fleet(user: Any) -> bool:
    return can(user, Action.VIEW_FLEET)


# (url name, label, who sees it); pages a role cannot use are left out of its navigation
NAVIGATION: list[tuple[str, str, Callable[[Any], bool]]] = [
    ("overview", "Overview", _everyone),
    ("feature-list", "Features", _everyone),
    ("request-log", "Requests", _everyone),
    ("routing", "Routing", _tuners),
    ("routing-analytics", "Routing analytics", _tuners),
    ("whatif-index", "What-if", _tuners),
    ("experiments", "Experiments", _tuners),
    ("fleet", "Fleet", _fleet),
    ("team-list", "Teams", _everyone),
    ("alerts", "Alerts", _everyone),
    ("audit-list", "Audit", _everyone),
]


# url-name prefixes of the pages under each navigation item, most specific first
SECTIONS = [
    ("routing-analytics", "routing-analytics"),
    ("whatif", "whatif-index"),
    ("experiment", "experiments"),
    ("routing", "routing"),
    ("fleet", "fleet"),
    ("bundle", "fleet"),
    ("feature", "feature-list"),
    ("team", "team-list"),
    ("alert", "alerts"),
    ("audit", "audit-list"),
    ("request", "request-log"),
    ("overview", "overview"),
]


def section_of(url_name: str) -> str:
    return next((item for prefix, item in SECTIONS if url_name.startswith(prefix)), "")


def navigation_for(user: Any) -> list[tuple[str, str]]:
    if not getattr(user, "is_authenticated", False):
        return []
    return [(name, label) for name, label, visible in NAVIGATION if visible(user)]


def navigation(request: HttpRequest) -> dict[str, object]:
    match = getattr(request, "resolver_match", None)
    current = match.url_name if match else ""
    return {
        "navigation": navigation_for(getattr(request, "user", None)),
        "current_url_name": current,
        "current_section": section_of(current or ""),
    }
