import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from controlplane.models import Feature, Membership, Role
from tests.factories import FeatureFactory, MembershipFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_feature_slug_is_unique_across_teams(feature, other_team):
    with pytest.raises(IntegrityError), transaction.atomic():
        Feature.objects.create(team=other_team, name="Another", slug=feature.slug)


def test_feature_name_unique_within_team_only(feature, other_team):
    FeatureFactory(team=other_team, name=feature.name)  # same name, other team: fine
    with pytest.raises(IntegrityError), transaction.atomic():
        FeatureFactory(team=feature.team, name=feature.name)


def test_one_role_per_user_and_team(team):
    user = UserFactory()
    MembershipFactory(user=user, team=team, role=Role.PM)
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user=user, team=team, role=Role.VIEWER)


def test_one_org_wide_role_per_user():
    user = UserFactory()
    MembershipFactory(user=user, team=None, role=Role.VIEWER)
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user=user, team=None, role=Role.ADMIN)


def test_role_must_be_known(team):
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user=UserFactory(), team=team, role="owner")


def test_team_cannot_be_deleted_while_it_has_features(feature):
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        feature.team.delete()


def test_slug_validation_message_names_the_field():
    team = TeamFactory.build(slug="Not a slug!")
    with pytest.raises(ValidationError) as exc:
        team.full_clean()
    assert "slug" in exc.value.message_dict
