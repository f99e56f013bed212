"""Navigation for the base template."""

from django.http import HttpRequest

NAVIGATION = [
    ("overview", "Overview"),
    ("feature-list", "Features"),
    ("routing", "Routing"),
    ("experiments", "Experiments"),
    ("fleet", "Fleet"),
    ("alerts", "Alerts"),
    ("audit-list", "Audit"),
]


def navigation(request: HttpRequest) -> dict[str, object]:
    match = getattr(request, "resolver_match", None)
    current = match.url_name if match else ""
    return {"navigation": NAVIGATION, "current_url_name": current}
