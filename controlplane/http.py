"""View helpers shared by every app: whether a request wants a fragment, saving a form through a service,
and fetching an object by its public code or answering 404. Views stay thin; these hold the rules once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest

T = TypeVar("T", bound=Model)


def wants_fragment(request: HttpRequest) -> bool:
    """True when htmx asks for a part of the page: an htmx request that is neither a boosted navigation nor
    a history restore (both of which need the whole page)."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def save_form(form: forms.BaseForm, save: Callable[[dict[str, Any]], Any]) -> tuple[Any, bool]:
    """Validate the form, then run `save` (a service that audits its change) with the cleaned data.

    Returns (result, True) on success and (None, False) otherwise. A ValidationError from the service lands
    on the form: errors naming a field of the form next to that field, the rest (and errors without a
    field) as non-field errors, so none is lost."""
    if not form.is_valid():
        return None, False
    try:
        return save(form.cleaned_data), True
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            for field, messages in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, messages)
        else:
            form.add_error(None, exc.messages)
        return None, False


def object_or_404(
    queryset: QuerySet[T],
    code: Any,
    *,
    visible: Callable[[T], bool] | None = None,
    message: str = "Not found",
) -> T:
    """The object of `queryset` with this public code, else 404 (also for a malformed code).

    `visible` scopes it to the user: when it says no, the answer is the same 404, so a caller cannot tell
    an object it may not see from one that does not exist."""
    try:
        obj = queryset.get(code=code)
    except (queryset.model.DoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise Http404(message) from exc
    if visible is not None and not visible(obj):
        raise Http404(message)
    return obj
