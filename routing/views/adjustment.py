"""Proposed per-feature score adjustments: the section on the routing analytics page, and MLOps's decision."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from controlplane.http import object_or_404
from controlplane.permissions import Action, can, visible_features
from routing.models import AdjustmentProposal, AdjustmentStatus
from routing.services import adjustments

RECENT = 20


@login_required
@require_GET
def adjustment_section(request: HttpRequest) -> HttpResponse:
    """Open proposals of the features the user sees, with their what-if, and the latest decisions."""
    shown = AdjustmentProposal.objects.filter(feature__in=visible_features(request.user)).select_related(
        "feature__team", "decided_by"
    )
    proposals = [
        {
            "proposal": p,
            "signals": p.adjustment.get("signals", []),
            "can_decide": can(request.user, Action.EDIT_ROUTING, p.feature),
        }
        for p in shown.filter(status=AdjustmentStatus.PROPOSED).order_by("feature__slug")
    ]
    decided = shown.filter(status__in=[AdjustmentStatus.APPROVED, AdjustmentStatus.REJECTED])[:RECENT]
    return render(
        request,
        "routing/_adjustments.html",
        {"proposals": proposals, "decided": decided, "min_labels": adjustments.MIN_LABELS},
    )


@login_required
@require_POST
def adjustment_action(request: HttpRequest, code: Any, action: str) -> HttpResponse:
    proposal = object_or_404(
        AdjustmentProposal.objects.select_related("feature__team"),
        code,
        visible=lambda p: can(request.user, Action.VIEW, p.feature),
        message="No such adjustment proposal",
    )
    if not can(request.user, Action.EDIT_ROUTING, proposal.feature):
        raise PermissionDenied(
            "Approving a score adjustment is a routing edit: it needs the admin or MLOps role."
        )
    try:
        if action == "approve":
            adjustments.adjustment_approve(actor=request.user, proposal=proposal)
            messages.success(
                request,
                f"Adjustment for {proposal.feature.slug} is in its policy draft: preview and publish to ship it.",
            )
        elif action == "reject":
            adjustments.adjustment_reject(actor=request.user, proposal=proposal)
            messages.success(request, f"Adjustment for {proposal.feature.slug} rejected.")
        else:
            raise Http404("No such action")
    except (ValueError, ValidationError) as refused:
        messages.error(request, " ".join(getattr(refused, "messages", None) or [str(refused)]))
    url = reverse("routing") if action == "approve" else reverse("routing-analytics")
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
