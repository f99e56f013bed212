"""factory_boy factories for the tenancy models."""

import factory
from django.contrib.auth import get_user_model

from controlplane.models import Feature, Membership, Role, Team


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    password = factory.django.Password("correct-horse-battery")


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class FeatureFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Feature

    team = factory.SubFactory(TeamFactory)
    name = factory.Sequence(lambda n: f"Feature {n}")
    slug = factory.Sequence(lambda n: f"feature-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    team = None
    role = Role.VIEWER
