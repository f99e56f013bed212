"""Issue 14 (security): attacks on the control plane's pages and API, each through the Django test client."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from routing import services
from routing.models import ModelDeployment, Rollout, RolloutStatus
from tests.routing.fleet_support import make_routing

pytestmark = pytest.mark.django_db


class _HxVals(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.values += [value or "" for name, value in attrs if name == "hx-vals"]


def test_fleet_rollback_button_keeps_a_hostile_pool_name_inside_its_json_string(client, users):
    """A pool name with quotes and braces must not add or override values the rollback button posts."""
    make_routing()
    first = services.bundle_publish(actor=None, note="first", rollout=False)
    Rollout.objects.create(bundle=first, status=RolloutStatus.SUCCEEDED)
    ModelDeployment.objects.filter(name="slm").update(context_window=8000)
    second = services.bundle_publish(actor=None, note="second", rollout=False)
    pool = 'eu", "pool": "", "x": "</script><b>\'{}'
    Rollout.objects.create(bundle=second, previous_bundle=first, pool=pool, status=RolloutStatus.SUCCEEDED)
    client.force_login(users["admin"])
    page = client.get(reverse("fleet"), {"fragment": "live"})
    assert page.status_code == 200
    parser = _HxVals()
    parser.feed(page.content.decode())
    assert parser.values, "the rollback button is missing"
    posted = json.loads(parser.values[0])
    assert posted == {"note": f"roll back {second.version} from the fleet page", "pool": pool}
