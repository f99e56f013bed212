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


from routing.engine import signing  # noqa: E402


class ProxyFactory(factory.django.DjangoModelFactory):
    """A fleet proxy authenticated by a plaintext `token` (stored only as its hash and signing key)."""

    class Meta:
        model = "routing.Proxy"
        exclude = ("token",)

    token = factory.Sequence(lambda n: f"proxy-token-{n}-0123456789abcdef")
    name = factory.Sequence(lambda n: f"proxy-{n}")
    base_url = factory.Sequence(lambda n: f"http://127.0.0.1:{4000 + n}")
    token_hash = factory.LazyAttribute(lambda p: signing.token_hash(p.token))
    signing_key = factory.LazyAttribute(lambda p: signing.signing_key(p.token))
