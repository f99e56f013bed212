"""The permission matrix: every role × every action × own team / other team / organisation."""

import pytest

from controlplane.permissions import Action, can, visible_features, visible_teams

pytestmark = pytest.mark.django_db

# (user key, action, target) → allowed. Targets: "own" = feature of `team`, "other" = feature of `other_team`, "org" = None.
MATRIX = [
    ("admin", Action.VIEW, "own", True),
    ("admin", Action.MANAGE_TEAMS, "org", True),
    ("admin", Action.EDIT_BUDGET, "other", True),
    ("admin", Action.MANAGE_KEYS, "own", True),
    ("admin", Action.MANAGE_FLEET, "org", True),
    ("admin", Action.MANAGE_MEMBERS, "org", True),
    ("viewer", Action.VIEW, "own", True),
    ("viewer", Action.VIEW, "other", True),
    ("viewer", Action.EDIT_BUDGET, "own", False),
    ("viewer", Action.EDIT_ROUTING, "own", False),
    ("viewer", Action.MANAGE_FEATURES, "own", False),
    ("viewer", Action.MANAGE_TEAMS, "org", False),
    ("viewer", Action.MANAGE_FLEET, "org", False),
    ("viewer", Action.ACK_ALERTS, "own", False),
    ("pm", Action.VIEW, "own", True),
    ("pm", Action.VIEW, "other", False),
    ("pm", Action.EDIT_BUDGET, "own", True),
    ("pm", Action.EDIT_BUDGET, "other", False),
    ("pm", Action.MANAGE_FEATURES, "own", True),
    ("pm", Action.MANAGE_FEATURES, "other", False),
    ("pm", Action.EDIT_ROUTING, "own", False),
    ("pm", Action.EDIT_EXPERIMENTS, "own", False),
    ("pm", Action.MANAGE_TEAMS, "org", False),
    ("pm", Action.MANAGE_FLEET, "org", False),
    ("pm", Action.MANAGE_KEYS, "own", False),
    ("pm", Action.ACK_ALERTS, "own", True),
    ("mlops", Action.EDIT_ROUTING, "own", True),
    ("mlops", Action.EDIT_ROUTING, "other", True),
    ("mlops", Action.EDIT_EXPERIMENTS, "other", True),
    ("mlops", Action.MANAGE_FLEET, "org", True),
    ("mlops", Action.EDIT_BUDGET, "own", False),
    ("mlops", Action.MANAGE_KEYS, "own", False),
    ("mlops", Action.MANAGE_TEAMS, "org", False),
    ("mlops", Action.MANAGE_MEMBERS, "org", False),
    ("team_viewer", Action.VIEW, "own", True),
    ("team_viewer", Action.VIEW, "other", False),
    ("team_viewer", Action.EDIT_BUDGET, "own", False),
    ("outsider", Action.VIEW, "own", False),
    ("outsider", Action.EDIT_BUDGET, "own", False),
    ("nobody", Action.VIEW, "own", False),
    ("nobody", Action.VIEW, "org", False),
]


@pytest.mark.parametrize(("who", "action", "target", "allowed"), MATRIX)
def test_permission_matrix(users, feature, other_feature, who, action, target, allowed):
    obj = {"own": feature, "other": other_feature, "org": None}[target]
    assert can(users[who], action, obj) is allowed


def test_anonymous_user_may_do_nothing(feature):
    from django.contrib.auth.models import AnonymousUser

    assert not any(can(AnonymousUser(), action, feature) for action in Action)


def test_team_scoped_user_sees_only_its_team(users, team, feature, other_feature):
    assert list(visible_teams(users["pm"])) == [team]
    assert list(visible_features(users["pm"])) == [feature]
    assert set(visible_features(users["viewer"])) == {feature, other_feature}
