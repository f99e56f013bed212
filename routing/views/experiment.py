"""Pages for threshold experiments and the what-if replay. Views stay thin: forms, permissions, one service call.

RBAC: anyone who can see the feature reads; Action.EDIT_EXPERIMENTS creates, starts, stops, ships
and drafts thresholds; features outside the user's teams are 404.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from controlplane.http import object_or_404, wants_fragment
from controlplane.permissions import Action, can, can_anywhere, feature_for_user, visible_features
from routing import charts
from routing.models import (
    Experiment,
    ExperimentStatus,
    RoutingPolicy,
    StickyBy,
    ThresholdDraft,
)
from routing.services import experiments, whatif
from routing.services.experiment_stats import MIN_SAMPLES

ARM_ROWS = 4
WINDOWS = (1, 7, 14, 30, 90)
WHATIF_CACHE_S = 120


# --- forms ------------------------------------------------------------------------------------------------


class ExperimentForm(forms.Form):
    feature = forms.ModelChoiceField(
        queryset=None, to_field_name="code", help_text="The feature whose traffic is split."
    )
    name = forms.CharField(max_length=100, help_text="e.g. lower threshold for summaries")
    hypothesis = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    sticky_by = forms.ChoiceField(choices=StickyBy.choices, initial=StickyBy.END_USER)
    alpha = forms.DecimalField(
        initial=Decimal("0.05"), min_value=Decimal("0.001"), max_value=Decimal("0.2"), decimal_places=3,
        help_text="0.05: intervals hold with 95 % confidence however often you look.",
    )  # fmt: skip
    max_fallback_rise = forms.DecimalField(
        initial=Decimal("0.05"), min_value=Decimal("0"), max_value=Decimal("1"), decimal_places=3,
        help_text="Stop when an arm's fallback rate is surely this much above control (0.05 = 5 points).",
    )  # fmt: skip
    max_error_rise = forms.DecimalField(
        initial=Decimal("0.01"), min_value=Decimal("0"), max_value=Decimal("1"), decimal_places=3,
        help_text="Stop when an arm's error rate is surely this much above control.",
    )  # fmt: skip
    min_feedback = forms.DecimalField(
        required=False, min_value=Decimal("1"), max_value=Decimal("5"), decimal_places=2,
        help_text="Stop when an arm's mean feedback (1–5) is surely below this; empty: no feedback guardrail.",
    )  # fmt: skip

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allowed = [f.pk for f in visible_features(user) if can(user, Action.EDIT_EXPERIMENTS, f)]
        self.fields["feature"].queryset = visible_features(user).filter(pk__in=allowed)
        for i in range(ARM_ROWS):
            required = i < 2
            self.fields[f"arm{i}_name"] = forms.CharField(
                required=required,
                max_length=64,
                label="Arm",
                initial=("control", "treatment")[i] if i < 2 else "",
            )
            self.fields[f"arm{i}_threshold"] = forms.DecimalField(
                required=required, label="Threshold", decimal_places=3
            )
            self.fields[f"arm{i}_weight"] = forms.IntegerField(
                required=required, label="Weight (%)", initial=50 if i < 2 else None
            )

    def arm_rows(self) -> list[tuple[Any, Any, Any]]:
        return [
            (self[f"arm{i}_name"], self[f"arm{i}_threshold"], self[f"arm{i}_weight"]) for i in range(ARM_ROWS)
        ]

    def arms(self) -> list[dict[str, Any]]:
        data = self.cleaned_data
        rows = []
        for i in range(ARM_ROWS):
            values = [data.get(f"arm{i}_{k}") for k in ("name", "threshold", "weight")]
            if all(v in (None, "") for v in values):
                continue
            rows.append({"name": values[0], "threshold": values[1], "weight": values[2], "row": i})
        return rows

    def add_service_errors(self, exc: ValidationError, rows: list[dict[str, Any]]) -> None:
        """Errors named arms-<n>-<field> go next to that arm's field; the rest to the form or the field named."""
        for key, errors in (exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}).items():
            parts = (key or "").split("-")
            if len(parts) == 3 and parts[0] == "arms" and parts[1].isdigit() and int(parts[1]) < len(rows):
                self.add_error(f"arm{rows[int(parts[1])]['row']}_{parts[2]}", errors)
            elif key in self.fields:
                self.add_error(key, errors)
            else:
                self.add_error(None, errors)


# --- helpers ----------------------------------------------------------------------------------------------


def _experiment_for_user(user: Any, code: Any) -> Experiment:
    return object_or_404(
        Experiment.objects.select_related("feature__team", "winner"),
        code,
        visible=lambda experiment: can(user, Action.VIEW, experiment.feature),
        message="No such experiment",
    )


def _require(user: Any, obj: Any) -> None:
    if not can(user, Action.EDIT_EXPERIMENTS, obj):
        raise PermissionDenied("Only MLOps engineers and admins run experiments and change thresholds.")


# --- experiments ------------------------------------------------------------------------------------------


@login_required
def experiment_list(request: HttpRequest) -> HttpResponse:
    features = visible_features(request.user)
    items = (
        Experiment.objects.filter(feature__in=features)
        .select_related("feature__team", "winner")
        .prefetch_related("arms")
    )
    return render(
        request,
        "routing/experiment_list.html",
        {
            "experiments": items,
            "features": features,
            "may_create": can_anywhere(request.user, Action.EDIT_EXPERIMENTS),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def experiment_create(request: HttpRequest) -> HttpResponse:
    if not can_anywhere(request.user, Action.EDIT_EXPERIMENTS):
        raise PermissionDenied("Only MLOps engineers and admins run experiments.")
    initial = {}
    if request.GET.get("feature"):
        initial["feature"] = request.GET["feature"]
    form = ExperimentForm(request.POST or None, user=request.user, initial=initial)
    if request.method == "POST" and form.is_valid():
        rows = form.arms()
        data = form.cleaned_data
        try:
            experiment = experiments.experiment_create(
                actor=request.user,
                feature=data["feature"],
                name=data["name"],
                arms=rows,
                sticky_by=data["sticky_by"],
                hypothesis=data["hypothesis"],
                alpha=data["alpha"],
                max_fallback_rise=data["max_fallback_rise"],
                max_error_rise=data["max_error_rise"],
                min_feedback=data["min_feedback"],
            )
        except ValidationError as exc:
            form.add_service_errors(exc, rows)
        else:
            messages.success(
                request, f"Experiment {experiment.name} created as a draft: start it when ready."
            )
            url = reverse("experiment-detail", args=[experiment.code])
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    template = (
        "routing/experiment_form_fields.html" if wants_fragment(request) else "routing/experiment_form.html"
    )
    status = 422 if form.errors and not request.htmx else 200  # htmx swaps only 2xx responses
    return render(request, template, {"form": form}, status=status)


@login_required
def experiment_detail(request: HttpRequest, code: Any) -> HttpResponse:
    """The live page; htmx polls the same URL for the results fragment (evaluated on every view)."""
    experiment = _experiment_for_user(request.user, code)
    analysis = experiment.verdict or {}
    if experiment.status == ExperimentStatus.RUNNING:
        try:
            analysis = experiments.experiment_evaluate(experiment=experiment, actor=None)
        except ValidationError as exc:
            messages.error(request, f"Evaluation failed: {'; '.join(exc.messages)}")
    comparisons = analysis.get("comparisons", [])
    context = {
        "experiment": experiment,
        "arms": list(experiment.arms.all()),
        "analysis": analysis,
        "verdict": analysis.get("verdict", {}),
        "min_samples": MIN_SAMPLES,
        "may_edit": can(request.user, Action.EDIT_EXPERIMENTS, experiment.feature),
        "may_publish": experiments.may_publish(request.user),
        "arms_figure": charts.experiment_arms_figure(analysis.get("arms", [])),
        "cost_figure": charts.experiment_differences_figure(
            comparisons, metric="cost_per_request", title="Cost per request: arm − control (USD)"
        ),
        "fallback_figure": charts.experiment_differences_figure(
            comparisons,
            metric="fallback_rate",
            title="Fallback rate: arm − control (points)",
            scale=100,
            unit=" (pp)",
        ),
    }
    template = "routing/experiment_live.html" if wants_fragment(request) else "routing/experiment_detail.html"
    return render(request, template, context)


@login_required
@require_POST
def experiment_action(request: HttpRequest, code: Any, action: str) -> HttpResponse:
    experiment = _experiment_for_user(request.user, code)
    _require(request.user, experiment.feature)
    try:
        if action == "start":
            experiments.experiment_start(actor=request.user, experiment=experiment)
            if experiments.may_publish(request.user):
                messages.success(request, "Started: the new bundle is rolling out to the proxies.")
            else:
                messages.warning(request, "Started. " + experiments.WAITS_FOR_PUBLISHER)
        elif action == "stop":
            experiments.experiment_stop(
                actor=request.user, experiment=experiment, reason=request.POST.get("reason", "")
            )
            if experiments.may_publish(request.user):
                messages.success(request, "Stopped: the feature is back on its policy threshold.")
            else:
                messages.warning(request, "Stopped. " + experiments.WAITS_FOR_PUBLISHER)
        elif action == "promote":
            arm = experiment.arms.filter(name=request.POST.get("arm", "")).first()
            if arm is None:
                raise ValidationError("Pick the arm to ship.")
            bundle = experiments.experiment_promote(actor=request.user, experiment=experiment, arm=arm)
            if bundle is None:
                messages.warning(
                    request,
                    f"Arm {arm.name} set as the feature's threshold. " + experiments.WAITS_FOR_PUBLISHER,
                )
            else:
                messages.success(
                    request, f"Shipped arm {arm.name}: threshold {arm.threshold} is live in {bundle.version}."
                )
        else:
            raise Http404("No such action")
    except ValidationError as exc:
        messages.error(request, " ".join(getattr(exc, "errors", None) or exc.messages))
    url = reverse("experiment-detail", args=[experiment.code])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


# --- what-if ----------------------------------------------------------------------------------------------


def _replay(feature: Any, days: int) -> tuple[whatif.Replay | None, list[str], float | None]:
    """The replay of the last `days` (cached briefly: the slider asks for it on every move)."""
    key = f"whatif:{feature.code}:{days}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    end = timezone.now()
    samples = whatif.feature_samples(feature=feature, start=end - timedelta(days=days), end=end)
    scores = [s.score for s in samples]
    current = whatif.current_threshold(feature=feature, scores=scores)
    try:
        result: tuple[Any, list[str], float | None] = (
            whatif.replay(samples, price_ratio=whatif.price_ratio(feature=feature)),
            [],
            current,
        )
    except ValueError as exc:
        result = (None, [str(exc)], current)
    cache.set(key, result, WHATIF_CACHE_S)
    return result


def _number(raw: str | None) -> float | None:
    try:
        return float(Decimal(raw)) if raw not in (None, "") else None
    except (InvalidOperation, ValueError):
        return None


@login_required
@require_http_methods(["GET", "POST"])
def whatif_page(request: HttpRequest, code: Any) -> HttpResponse:
    """Replay thresholds on recorded traffic; the slider (htmx) re-renders the figures; POST drafts a threshold."""
    feature = feature_for_user(request.user, code)
    may_edit = can(request.user, Action.EDIT_EXPERIMENTS, feature)
    params = request.POST if request.method == "POST" else request.GET
    days = int(params.get("days", 7)) if str(params.get("days", 7)).isdigit() else 7
    days = days if days in WINDOWS else 7
    result, problems, current = _replay(feature, days)
    selected = None
    point = None
    if result is not None:
        share = _number(params.get("share"))
        threshold = _number(params.get("threshold"))
        if params.get("by") == "share" and share is not None:
            point = min(result.points, key=lambda p: (abs(p.small_share - share / 100), p.threshold))
        elif threshold is not None:
            point = result.at(min(max(threshold, 0.0), whatif.MAX_THRESHOLD))
        else:
            point = result.at(current if current is not None else 0.5)
        selected = point.threshold
    if request.method == "POST":
        if not may_edit:
            raise PermissionDenied("Only MLOps engineers and admins change thresholds.")
        if point is None:
            messages.error(request, "Nothing to draft: there is no recorded traffic in this window.")
        else:
            try:
                draft = experiments.threshold_draft_create(
                    actor=request.user,
                    feature=feature,
                    threshold=Decimal(str(round(point.threshold, 3))),
                    previous=Decimal(str(current)) if current is not None else None,
                    projection={**point.as_dict(), "days": days, "calls": result.calls if result else 0},
                    note=params.get("note", ""),
                )
                messages.success(
                    request, f"Drafted threshold {draft.threshold}: review it below, then publish."
                )
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))
        url = (
            reverse("whatif", args=[feature.code])
            + f"?days={days}&threshold={selected if selected is not None else ''}"
        )
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    current_point = result.at(current) if (result is not None and current is not None) else None
    context = {
        "feature": feature,
        "result": result,
        "problems": problems,
        "current": current,
        "current_point": current_point,
        "point": point,
        "days": days,
        "windows": WINDOWS,
        "may_edit": may_edit,
        "may_publish": experiments.may_publish(request.user),
        "figure": charts.whatif_figure(
            [p.as_dict() for p in result.points], current=current, selected=selected
        )
        if result is not None
        else None,
        "drafts": ThresholdDraft.objects.filter(feature=feature).select_related("created_by")[:10],
        "running": Experiment.objects.filter(feature=feature, status=ExperimentStatus.RUNNING).first(),
    }
    template = "routing/whatif_live.html" if wants_fragment(request) else "routing/whatif.html"
    return render(request, template, context)


@login_required
@require_POST
def threshold_draft_action(request: HttpRequest, code: Any, action: str) -> HttpResponse:
    draft = object_or_404(
        ThresholdDraft.objects.select_related("feature__team"),
        code,
        visible=lambda draft: can(request.user, Action.VIEW, draft.feature),
        message="No such draft",
    )
    _require(request.user, draft.feature)
    try:
        if action == "publish":
            bundle = experiments.threshold_draft_publish(actor=request.user, draft=draft)
            messages.success(request, f"Threshold {draft.threshold} is live in {bundle.version}.")
        elif action == "discard":
            experiments.threshold_draft_discard(actor=request.user, draft=draft)
            messages.success(request, "Draft discarded.")
        else:
            raise Http404("No such action")
    except ValidationError as exc:
        messages.error(request, " ".join(getattr(exc, "errors", None) or exc.messages))
    url = reverse("whatif", args=[draft.feature.code])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@login_required
def whatif_index(request: HttpRequest) -> HttpResponse:
    """Pick a feature to replay thresholds on (the what-if has its own place in the navigation)."""
    features = list(visible_features(request.user).order_by("team__name", "name"))
    thresholds = dict(
        RoutingPolicy.objects.filter(feature__in=features).values_list("feature_id", "threshold")
    )
    default = RoutingPolicy.objects.filter(feature__isnull=True).values_list("threshold", flat=True).first()
    rows = [(f, thresholds.get(f.pk, default), f.pk in thresholds) for f in features]
    return render(request, "routing/whatif_index.html", {"rows": rows})
