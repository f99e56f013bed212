"""Routing pages: deployments, default and per-feature policies, feature keys, publish. Views stay thin."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from controlplane.http import object_or_404, save_form
from controlplane.models import Feature
from controlplane.permissions import Action, can, can_anywhere, visible_features
from routing import selectors, services
from routing.compiler import bundle_diff, compile_bundle
from routing.forms.policy import DeploymentForm, FeatureKeyForm, PolicyForm, PublishForm
from routing.models import Bundle, FeatureKey, ModelDeployment, RoutingPolicy

PREVIEW_SALT = "routing.publish-preview"
PREVIEW_MAX_AGE_S = 3600  # a diff older than an hour is not what anyone remembers reviewing


def _require(user: Any, action: Action, obj: Any = None, message: str = "") -> None:
    if not can(user, action, obj):
        raise PermissionDenied(message or "You may not do this: ask an admin.")


def _policy_for_user(user: Any, code: Any) -> RoutingPolicy:
    return object_or_404(
        selectors.policy_list(),
        code,
        visible=lambda policy: not policy.feature_id or can(user, Action.VIEW, policy.feature),
        message="No such policy",
    )


def _deployment(code: Any) -> ModelDeployment:
    return object_or_404(ModelDeployment.objects.all(), code, message="No such deployment")


def _key_for_user(user: Any, code: Any) -> FeatureKey:
    return object_or_404(
        FeatureKey.objects.select_related("feature__team"),
        code,
        visible=lambda key: can(user, Action.VIEW, key.feature),
        message="No such key",
    )


def _key_features(user: Any) -> Any:
    return [f for f in visible_features(user).filter(is_active=True) if can(user, Action.MANAGE_KEYS, f)]


def _features_qs(features: list[Any]) -> Any:
    return Feature.objects.filter(pk__in=[f.pk for f in features]).select_related("team")


@login_required
@require_GET
def routing_page(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not can(user, Action.VIEW):  # no membership anywhere: nothing of the organisation to show
        raise Http404("Not found")
    features = visible_features(user)
    policies = list(selectors.policy_list())
    default = next((p for p in policies if p.is_default), None)
    overrides = [p for p in policies if not p.is_default and p.feature in features]
    routing_features = [f for f in features if can(user, Action.EDIT_ROUTING, f)]
    key_features = _key_features(user)
    deployments = [(d, selectors.deployment_prices(d)) for d in selectors.deployment_list()]
    context = {
        "deployments": deployments,
        "default_policy": default,
        "overrides": overrides,
        "keys": selectors.feature_key_list(features=features),
        "bundles": Bundle.objects.select_related("created_by")[:5],
        "may_edit_org": can(user, Action.EDIT_ROUTING),
        "may_edit_routing": can_anywhere(user, Action.EDIT_ROUTING),
        "may_publish": can(user, Action.MANAGE_FLEET),
        "may_read_bundles": can(user, Action.VIEW_FLEET),  # bundles hold every team's slugs and budgets
        "may_keys": bool(key_features),
        "deployment_form": DeploymentForm(),
        "policy_form": PolicyForm(features=_features_qs(routing_features), default=default is None),
        "key_form": FeatureKeyForm(features=_features_qs(key_features)),
        "publish_form": PublishForm(),
    }
    return render(request, "routing/routing.html", context)


@login_required
@require_POST
def deployment_create(request: HttpRequest) -> HttpResponse:
    _require(request.user, Action.EDIT_ROUTING, None, "Only MLOps engineers and admins edit deployments.")
    form = DeploymentForm(request.POST)
    _, ok = save_form(form, lambda data: services.deployment_create(actor=request.user, **data))
    if ok:
        return HttpResponseClientRedirect(reverse("routing"))
    return render(request, "routing/_deployment_form.html", {"form": form}, status=422)


@login_required
@require_http_methods(["GET", "POST"])
def deployment_detail(request: HttpRequest, code: str) -> HttpResponse:
    if not can(request.user, Action.VIEW):
        raise Http404("No such deployment")
    deployment = _deployment(code)
    may_edit = can(request.user, Action.EDIT_ROUTING)
    form = DeploymentForm(instance=deployment)
    if request.method == "POST":
        _require(request.user, Action.EDIT_ROUTING, None, "Only MLOps engineers and admins edit deployments.")
        form = DeploymentForm(request.POST, instance=deployment)
        _, ok = save_form(
            form, lambda data: services.deployment_update(actor=request.user, deployment=deployment, **data)
        )
        if ok:
            return HttpResponseClientRedirect(reverse("routing"))
        return render(
            request, "routing/_deployment_form.html", {"form": form, "deployment": deployment}, status=422
        )
    context = {
        "deployment": deployment,
        "form": form,
        "may_edit": may_edit,
        "prices": selectors.deployment_prices(deployment),
    }
    return render(request, "routing/deployment_detail.html", context)


@login_required
@require_POST
def policy_create(request: HttpRequest) -> HttpResponse:
    user = request.user
    has_default = RoutingPolicy.objects.filter(feature__isnull=True).exists()
    if not has_default:
        _require(user, Action.EDIT_ROUTING, None, "Only MLOps engineers and admins set the default policy.")
        form = PolicyForm(request.POST, default=True)
        save = lambda data: services.policy_create(actor=user, feature=None, **data)  # noqa: E731
    else:
        if not can_anywhere(user, Action.EDIT_ROUTING):
            raise PermissionDenied("Only MLOps engineers and admins edit routing policies.")
        allowed = _features_qs([f for f in visible_features(user) if can(user, Action.EDIT_ROUTING, f)])
        form = PolicyForm(request.POST, features=allowed)
        save = lambda data: services.policy_create(actor=user, **data)  # noqa: E731
    _, ok = save_form(form, save)
    if ok:
        return HttpResponseClientRedirect(reverse("routing"))
    return render(request, "routing/_policy_form.html", {"form": form}, status=422)


@login_required
@require_http_methods(["GET", "POST"])
def policy_detail(request: HttpRequest, code: str) -> HttpResponse:
    policy = _policy_for_user(request.user, code)
    if not can(request.user, Action.VIEW, policy.feature):
        raise Http404("No such policy")
    may_edit = can(request.user, Action.EDIT_ROUTING, policy.feature)
    form = PolicyForm(instance=policy)
    if request.method == "POST":
        _require(
            request.user,
            Action.EDIT_ROUTING,
            policy.feature,
            "Only MLOps engineers and admins edit policies.",
        )
        form = PolicyForm(request.POST, instance=policy)
        _, ok = save_form(
            form, lambda data: services.policy_update(actor=request.user, policy=policy, **data)
        )
        if ok:
            return HttpResponseClientRedirect(reverse("routing"))
        return render(request, "routing/_policy_form.html", {"form": form, "policy": policy}, status=422)
    return render(
        request, "routing/policy_detail.html", {"policy": policy, "form": form, "may_edit": may_edit}
    )


@login_required
@require_POST
def policy_delete(request: HttpRequest, code: str) -> HttpResponse:
    policy = _policy_for_user(request.user, code)
    _require(
        request.user, Action.EDIT_ROUTING, policy.feature, "Only MLOps engineers and admins delete policies."
    )
    try:
        services.policy_delete(actor=request.user, policy=policy)
    except ValidationError as exc:
        return HttpResponse(" ".join(exc.messages), status=422)
    return HttpResponseClientRedirect(reverse("routing"))


@login_required
@require_POST
def key_create(request: HttpRequest) -> HttpResponse:
    features = _key_features(request.user)
    if not features:
        raise PermissionDenied("Only admins issue feature keys.")
    form = FeatureKeyForm(request.POST, features=_features_qs(features))
    result, ok = save_form(form, lambda data: services.feature_key_create(actor=request.user, **data))
    if ok:
        key, plaintext = result
        return render(request, "routing/_key_created.html", {"key": key, "plaintext": plaintext})
    return render(request, "routing/_key_form.html", {"key_form": form}, status=422)


@login_required
@require_POST
def key_revoke(request: HttpRequest, code: str) -> HttpResponse:
    key = _key_for_user(request.user, code)
    _require(request.user, Action.MANAGE_KEYS, key.feature, "Only admins revoke feature keys.")
    services.feature_key_revoke(actor=request.user, key=key)
    return HttpResponseClientRedirect(reverse("routing"))


def _preview_token(user: Any, source_hash: str, base: int) -> str:
    return signing.dumps({"source": source_hash, "base": base, "user": user.pk}, salt=PREVIEW_SALT)


def _previewed(request: HttpRequest) -> tuple[str, int]:
    """(source hash, latest bundle number) of the diff this user was shown, from the preview's signed token.

    Raises ValidationError naming the field when there is none, it was tampered with or is too old."""
    token = request.POST.get("preview_token", "")
    if not token:
        raise ValidationError(
            "preview_token: publishing needs the diff first: press “Preview changes”, read what changes, "
            "then publish from the preview."
        )
    try:
        seen = signing.loads(token, salt=PREVIEW_SALT, max_age=PREVIEW_MAX_AGE_S)
    except signing.SignatureExpired as exc:
        raise ValidationError(
            f"preview_token: your preview is more than {PREVIEW_MAX_AGE_S // 60} minutes old: press "
            "“Preview changes” again, check the diff, then publish."
        ) from exc
    except signing.BadSignature as exc:
        raise ValidationError(
            "preview_token: this is not a preview this server made: press “Preview changes” and publish from it."
        ) from exc
    if seen.get("user") != request.user.pk:
        raise ValidationError(
            "preview_token: this preview was made for another user: press “Preview changes” yourself."
        )
    return str(seen["source"]), int(seen["base"])


@login_required
@require_POST
def publish(request: HttpRequest) -> HttpResponse:
    _require(request.user, Action.MANAGE_FLEET, None, "Only MLOps engineers and admins publish bundles.")
    form = PublishForm(request.POST)
    errors: list[str] = []
    if form.is_valid():
        try:
            previewed = _previewed(request)
            bundle = services.bundle_publish(
                actor=request.user, note=form.cleaned_data["note"], previewed=previewed
            )
        except services.BundleRejected as exc:
            errors = exc.errors
        except ValidationError as exc:
            errors = exc.messages
        else:
            rollout = bundle.rollouts.order_by("-id").first()
            target = (
                reverse("fleet-rollout", args=[rollout.code])
                if rollout
                else reverse("bundle-detail", args=[bundle.code])
            )
            return HttpResponseClientRedirect(target)
    return render(
        request, "routing/_publish_form.html", {"publish_form": form, "publish_errors": errors}, status=422
    )


@login_required
@require_GET
def publish_preview(request: HttpRequest) -> HttpResponse:
    """What publishing now would change against the latest bundle (compiled, not stored), or why it would fail."""
    _require(request.user, Action.MANAGE_FLEET, None, "Only MLOps engineers and admins publish bundles.")
    latest = Bundle.objects.order_by("-number").first()
    compiled = compile_bundle(version="preview", created_at=timezone.now().isoformat(timespec="seconds"))
    changes = [
        c
        for c in bundle_diff(latest.document if latest else None, compiled.document)
        if c.path != "$.version"
    ]
    token = _preview_token(request.user, compiled.source_hash, latest.number if latest else 0)
    unchanged = latest is not None and latest.source_hash == compiled.source_hash
    return render(
        request,
        "routing/_publish_preview.html",
        {
            "changes": changes,
            "against": latest,
            "errors": compiled.errors,
            "preview_token": token,
            "unchanged": unchanged,
        },
    )
