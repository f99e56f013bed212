"""The shared view helpers (controlplane/http.py): the fragment test, the form save, the scoped 404."""

from __future__ import annotations

import uuid

import pytest
from django import forms
from django.core.exceptions import ValidationError
from django.http import Http404
from django.test import RequestFactory
from django_htmx.middleware import HtmxMiddleware

from controlplane.http import object_or_404, save_form, wants_fragment
from controlplane.models import Feature
from controlplane.permissions import Action, can


def _request(**headers: str):  # type: ignore[no-untyped-def]
    request = RequestFactory().get("/features/", headers=headers)
    HtmxMiddleware(lambda r: None)(request)  # sets request.htmx exactly as in a served request
    return request


def test_wants_fragment_only_for_a_plain_htmx_request():
    assert wants_fragment(_request(**{"HX-Request": "true"}))
    assert not wants_fragment(_request())
    assert not wants_fragment(_request(**{"HX-Request": "true", "HX-Boosted": "true"}))
    assert not wants_fragment(_request(**{"HX-Request": "true", "HX-History-Restore-Request": "true"}))


class _NameForm(forms.Form):
    name = forms.CharField(max_length=10)


def test_save_form_returns_the_service_result_on_valid_input():
    form = _NameForm({"name": "alpha"})
    assert save_form(form, lambda data: data["name"].upper()) == ("ALPHA", True)


def test_save_form_does_not_call_the_service_on_invalid_input():
    called: list[object] = []
    form = _NameForm({"name": "x" * 11})
    assert save_form(form, called.append) == (None, False)
    assert called == []
    assert "name" in form.errors


def test_save_form_keeps_field_errors_and_non_field_errors():
    def rejects(data: dict[str, object]) -> None:
        raise ValidationError({"name": ["Taken."], "slug": ["Slug taken."]})

    form = _NameForm({"name": "alpha"})
    assert save_form(form, rejects) == (None, False)
    assert form.errors["name"] == ["Taken."]
    assert form.non_field_errors() == ["Slug taken."]  # a field the form lacks still reaches the user


def test_save_form_keeps_an_error_without_a_field():
    def rejects(data: dict[str, object]) -> None:
        raise ValidationError("A running rollout blocks this publish.")

    form = _NameForm({"name": "alpha"})
    assert save_form(form, rejects) == (None, False)
    assert form.non_field_errors() == ["A running rollout blocks this publish."]


@pytest.mark.django_db
def test_object_or_404_scopes_to_the_user(feature, other_feature, users):
    viewer = users["team_viewer"]
    visible = lambda f: can(viewer, Action.VIEW, f)  # noqa: E731
    assert object_or_404(Feature.objects.all(), feature.code, visible=visible) == feature
    with pytest.raises(Http404, match="No such feature"):
        object_or_404(Feature.objects.all(), other_feature.code, visible=visible, message="No such feature")
    with pytest.raises(Http404, match="No such feature"):
        object_or_404(Feature.objects.all(), uuid.uuid4(), visible=visible, message="No such feature")
    with pytest.raises(Http404):
        object_or_404(Feature.objects.all(), "not-a-uuid")
