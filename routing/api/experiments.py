"""API v1 for threshold experiments and end-user feedback.

`POST /api/v1/feedback` is called by a feature's own code with its feature key
(`Authorization: Bearer <key>`), not by a user; everything else is the usual session/token API and
asks controlplane.permissions.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.api.serializers import _as_drf_error
from controlplane.permissions import Action, can, visible_features
from routing.models import Experiment, ExperimentArm
from routing.services import BundleRejected, experiments


def _run(call: Any) -> Any:
    try:
        return call()
    except BundleRejected as exc:
        raise DRFValidationError({"errors": exc.errors}) from exc
    except DjangoValidationError as exc:
        raise _as_drf_error(exc) from exc


class FeedbackSerializer(serializers.Serializer):
    call_id = serializers.CharField(max_length=128, help_text="The call id the proxy returned for the call.")
    score = serializers.JSONField(help_text="'up', 'down', or a whole number 1–5 (thumbs up = 5, down = 1).")
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class FeedbackView(APIView):
    """Record an end user's verdict on one call of the key's feature (a repeat replaces the earlier one)."""

    authentication_classes: list = []  # the feature key below, not a user session
    permission_classes: list = []
    parser_classes = [JSONParser]

    @extend_schema(
        request=FeedbackSerializer,
        responses={201: FeedbackSerializer, 200: FeedbackSerializer},
        auth=[],
        description="Authorization: Bearer <feature key>. 401 for unknown, revoked or expired keys.",
    )
    def post(self, request: Request) -> Response:
        header = request.headers.get("Authorization", "")
        scheme, _, plaintext = header.partition(" ")
        try:
            key = experiments.feature_key_authenticate(
                plaintext=plaintext.strip() if scheme.lower() == "bearer" else ""
            )
        except experiments.KeyRejected as exc:
            return Response(
                {"detail": str(exc)},
                status=status.HTTP_401_UNAUTHORIZED,
                headers={"WWW-Authenticate": "Bearer"},
            )
        payload = FeedbackSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        feedback, created = _run(
            lambda: experiments.feedback_record(
                key=key, call_id=data["call_id"], score=data["score"], comment=data.get("comment", "")
            )
        )
        body = {
            "call_id": feedback.call_id,
            "feature": key.feature.slug,
            "score": feedback.score,
            "comment": feedback.comment,
        }
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ArmSerializer(serializers.ModelSerializer):
    class Meta:
        model = ExperimentArm
        fields = ["name", "threshold", "weight", "is_control"]


class ExperimentSerializer(serializers.ModelSerializer):
    feature = serializers.SlugRelatedField(slug_field="code", read_only=True)
    feature_code = serializers.UUIDField(write_only=True)
    arms = ArmSerializer(many=True)

    class Meta:
        model = Experiment
        fields = [
            "code",
            "feature",
            "feature_code",
            "name",
            "slug",
            "hypothesis",
            "status",
            "sticky_by",
            "alpha",
            "max_fallback_rise",
            "max_error_rise",
            "min_feedback",
            "arms",
            "started_at",
            "stopped_at",
            "stop_reason",
            "verdict",
            "evaluated_at",
        ]
        read_only_fields = [
            "slug",
            "status",
            "started_at",
            "stopped_at",
            "stop_reason",
            "verdict",
            "evaluated_at",
        ]


class ExperimentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Threshold experiments of the features you can see; MLOps and admins create, start, stop and ship."""

    serializer_class = ExperimentSerializer
    lookup_field = "code"

    def get_queryset(self) -> QuerySet[Experiment]:
        return (
            Experiment.objects.filter(feature__in=visible_features(self.request.user))
            .select_related("feature")
            .prefetch_related("arms")
        )

    def _editable(self, experiment: Experiment) -> Experiment:
        if not can(self.request.user, Action.EDIT_EXPERIMENTS, experiment.feature):
            raise PermissionDenied("Only MLOps engineers and admins run experiments.")
        return experiment

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        feature = visible_features(request.user).filter(code=data.pop("feature_code")).first()
        if feature is None:
            raise NotFound("No such feature.")
        if not can(request.user, Action.EDIT_EXPERIMENTS, feature):
            raise PermissionDenied("Only MLOps engineers and admins run experiments.")
        arms = [dict(a) for a in data.pop("arms")]
        experiment = _run(
            lambda: experiments.experiment_create(actor=request.user, feature=feature, arms=arms, **data)
        )
        return Response(self.get_serializer(experiment).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def start(self, request: Request, code: str | None = None) -> Response:
        experiment = self._editable(self.get_object())
        _run(lambda: experiments.experiment_start(actor=request.user, experiment=experiment))
        return Response(self.get_serializer(Experiment.objects.get(pk=experiment.pk)).data)

    @action(detail=True, methods=["post"])
    def stop(self, request: Request, code: str | None = None) -> Response:
        experiment = self._editable(self.get_object())
        reason = str(request.data.get("reason", "")) if hasattr(request.data, "get") else ""
        _run(lambda: experiments.experiment_stop(actor=request.user, experiment=experiment, reason=reason))
        return Response(self.get_serializer(Experiment.objects.get(pk=experiment.pk)).data)

    @extend_schema(request=inline_serializer("ExperimentPromote", {"arm": serializers.CharField()}))
    @action(detail=True, methods=["post"])
    def promote(self, request: Request, code: str | None = None) -> Response:
        experiment = self._editable(self.get_object())
        name = request.data.get("arm") if hasattr(request.data, "get") else None
        arm = experiment.arms.filter(name=name).first()
        if arm is None:
            raise DRFValidationError(
                {"arm": f"Name one of the arms: {', '.join(a.name for a in experiment.arms.all())}."}
            )
        bundle = _run(
            lambda: experiments.experiment_promote(actor=request.user, experiment=experiment, arm=arm)
        )
        return Response(
            {
                "bundle": bundle.version if bundle else None,
                "published": bundle is not None,  # False: waits for an org-wide publisher
                **self.get_serializer(Experiment.objects.get(pk=experiment.pk)).data,
            }
        )

    @action(detail=True, methods=["get"])
    def analysis(self, request: Request, code: str | None = None) -> Response:
        """Evaluate now (a breached guardrail stops the experiment) and return the per-arm analysis."""
        experiment = self.get_object()
        return Response(_run(lambda: experiments.experiment_evaluate(experiment=experiment, actor=None)))
