"""Fleet pages: proxies and their health, rollouts with live progress, bundle versions with diff and config."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from controlplane.http import object_or_404, save_form, wants_fragment
from controlplane.permissions import Action, can
from routing import selectors, services
from routing.compiler import bundle_diff
from routing.forms.fleet import ProxyForm, RolloutForm
from routing.models import Bundle, Proxy, Rollout
from routing.services import fleet as fleet_services


def _viewer(request: HttpRequest) -> None:
    if not can(request.user, Action.VIEW):
        raise Http404("Not found")


def _bundle_reader(request: HttpRequest) -> None:
    """Bundles hold every team's slugs, key hashes and budgets: org-wide roles only (404 for the rest)."""
    if not can(request.user, Action.VIEW_FLEET):
        raise Http404("Not found")


def _manager(request: HttpRequest) -> None:
    _viewer(request)
    if not can(request.user, Action.MANAGE_FLEET):
        raise PermissionDenied("Only organisation-wide MLOps engineers and admins manage the fleet.")


def _get(model: Any, code: Any) -> Any:
    return object_or_404(model.objects.all(), code)


@login_required
@require_http_methods(["GET", "POST"])
def fleet_page(request: HttpRequest) -> HttpResponse:
    _viewer(request)
    form = ProxyForm()
    if request.method == "POST":
        _manager(request)
        form = ProxyForm(request.POST)
        created, ok = save_form(form, lambda data: fleet_services.proxy_create(actor=request.user, **data))
        if ok:
            proxy, token = created
            return render(request, "routing/fleet_token.html", {"proxy": proxy, "token": token})
        return render(request, "routing/fleet_proxy_form.html", {"form": form}, status=422)
    rollouts = selectors.rollout_list()
    context = {
        "rows": selectors.fleet_rows(),
        "rollouts": [(r, selectors.rollout_progress(r)) for r in rollouts],
        "any_running": any(r.is_running for r in rollouts),
        "form": form,
        "may_manage": can(request.user, Action.MANAGE_FLEET),
        "may_read_bundles": can(request.user, Action.VIEW_FLEET),
    }
    if wants_fragment(request) and request.GET.get("fragment") == "live":
        return render(request, "routing/fleet_live.html", context)
    return render(request, "routing/fleet.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def proxy_detail(request: HttpRequest, code: str) -> HttpResponse:
    _viewer(request)
    proxy = _get(Proxy, code)
    form = ProxyForm(instance=proxy)
    if request.method == "POST":
        _manager(request)
        form = ProxyForm(request.POST, instance=proxy)
        _, ok = save_form(
            form, lambda data: fleet_services.proxy_update(actor=request.user, proxy=proxy, **data)
        )
        if ok:
            return HttpResponseClientRedirect(reverse("fleet"))
        return render(request, "routing/fleet_proxy_form.html", {"form": form, "proxy": proxy}, status=422)
    row = next(r for r in selectors.fleet_rows() if r.proxy.pk == proxy.pk)
    context = {
        "row": row,
        "proxy": proxy,
        "form": form,
        "may_manage": can(request.user, Action.MANAGE_FLEET),
        "legacy_credential": fleet_services.proxy_has_legacy_credential(proxy),
    }
    return render(request, "routing/fleet_proxy.html", context)


@login_required
@require_POST
def proxy_rotate_token(request: HttpRequest, code: str) -> HttpResponse:
    _viewer(request)
    proxy = _get(Proxy, code)
    _manager(request)
    token = fleet_services.proxy_rotate_token(actor=request.user, proxy=proxy)
    return render(request, "routing/fleet_token.html", {"proxy": proxy, "token": token})


@login_required
@require_GET
def rollout_detail(request: HttpRequest, code: str) -> HttpResponse:
    _viewer(request)
    rollout = _get(Rollout, code)
    context = {
        "rollout": rollout,
        "targets": rollout.targets.select_related("proxy"),
        "progress": selectors.rollout_progress(rollout),
        "may_read_bundles": can(request.user, Action.VIEW_FLEET),
    }
    if wants_fragment(request):
        return render(request, "routing/fleet_rollout_live.html", context)
    return render(request, "routing/fleet_rollout.html", context)


@login_required
@require_GET
def bundle_list(request: HttpRequest) -> HttpResponse:
    _bundle_reader(request)
    bundles = Bundle.objects.select_related("created_by")[:100]
    return render(request, "routing/fleet_bundles.html", {"bundles": bundles})


@login_required
@require_GET
def bundle_detail(request: HttpRequest, code: str) -> HttpResponse:
    _bundle_reader(request)
    bundle = _get(Bundle, code)
    against_code = request.GET.get("against")
    if against_code:
        against = _get(Bundle, against_code)
    else:
        against = Bundle.objects.filter(number__lt=bundle.number).order_by("-number").first()
    context = {
        "bundle": bundle,
        "against": against,
        "changes": bundle_diff(against.document if against else None, bundle.document),
        "others": Bundle.objects.exclude(pk=bundle.pk).order_by("-number")[:50],
        "document": json.dumps(bundle.document, indent=2, sort_keys=True),
        "rollouts": bundle.rollouts.all()[:10],
        "may_manage": can(request.user, Action.MANAGE_FLEET),
        "form": RolloutForm(),
    }
    return render(request, "routing/fleet_bundle.html", context)


@login_required
@require_POST
def bundle_rollout(request: HttpRequest, code: str) -> HttpResponse:
    """Roll this version out (again): a rollback when it is older than the fleet's current bundle."""
    _viewer(request)
    bundle = _get(Bundle, code)
    _manager(request)
    form = RolloutForm(request.POST)
    if not form.is_valid():
        return HttpResponse(
            format_html('<p class="error" role="alert">{}</p>', form.errors.as_text()), status=422
        )
    try:
        rollout = services.rollout_rollback(
            actor=request.user, bundle=bundle, pool=form.cleaned_data["pool"], note=form.cleaned_data["note"]
        )
    except ValidationError as exc:
        return HttpResponse(
            format_html('<p class="error" role="alert">{}</p>', " ".join(exc.messages)), status=422
        )
    return HttpResponseClientRedirect(reverse("fleet-rollout", args=[rollout.code]))
