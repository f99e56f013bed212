"""Spend ingest endpoint: a plain Django view on the hot path, documented in the OpenAPI schema."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.views import APIView

from billing import services
from routing.engine import signing


@csrf_exempt
@require_POST
def ingest_spend(request: HttpRequest) -> JsonResponse:
    """POST /api/v1/ingest/spend: a proxy's signed batch of spend records (contract in docs/spend.md)."""
    limits = services.ingest_limits()
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limits["max_bytes"]:
        return JsonResponse(
            {
                "errors": [
                    {
                        "index": None,
                        "field": "body",
                        "message": f"is {declared} bytes: send at most {limits['max_bytes']} bytes a batch (split it)",
                    }
                ]
            },
            status=413,
        )
    try:
        result = services.spend_request_ingest(
            authorization=request.headers.get("Authorization", ""),
            timestamp=request.headers.get(signing.TIMESTAMP_HEADER, ""),
            signature=request.headers.get(signing.SIGNATURE_HEADER, ""),
            body=request.read(limits["max_bytes"] + 1),
        )
    except services.IngestRejected as exc:
        return JsonResponse({"errors": [e.to_json() for e in exc.errors]}, status=exc.status)
    return JsonResponse(result.to_json())


_ERRORS = inline_serializer(
    "SpendIngestErrors",
    {
        "errors": serializers.ListField(
            child=inline_serializer(
                "SpendIngestError",
                {
                    "index": serializers.IntegerField(allow_null=True),
                    "field": serializers.CharField(),
                    "message": serializers.CharField(),
                },
            )
        )
    },
)


class SpendIngestSchema(APIView):
    """Describes ingest_spend in the OpenAPI schema; never serves a request (see ingest_spend_view below)."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        operation_id="ingest_spend",
        summary="Ingest a proxy's signed batch of spend records",
        description=(
            'Body `{"records": [SpendRecord, ...]}` (routing/engine/spend.py). Headers: `Authorization: Bearer '
            "<proxy token>`, `X-FinOps-Timestamp: <unix seconds>`, `X-FinOps-Signature: v1=<hex HMAC-SHA256 of "
            "'<timestamp>.<raw body>'>`. Idempotent: re-sent records count as duplicates. Each record is "
            "validated on its own: a bad one is listed in `rejected` by index and the rest are stored."
        ),
        tags=["ingest"],
        auth=[],
        parameters=[
            OpenApiParameter(signing.TIMESTAMP_HEADER, str, OpenApiParameter.HEADER, required=True),
            OpenApiParameter(signing.SIGNATURE_HEADER, str, OpenApiParameter.HEADER, required=True),
        ],
        request=inline_serializer(
            "SpendBatch", {"records": serializers.ListField(child=serializers.DictField())}
        ),
        responses={
            200: inline_serializer(
                "SpendIngestResult",
                {
                    "accepted": serializers.IntegerField(),
                    "duplicates": serializers.IntegerField(),
                    "rejected": serializers.ListField(
                        child=inline_serializer(
                            "SpendIngestRejection",
                            {
                                "index": serializers.IntegerField(),
                                "field": serializers.CharField(),
                                "reason": serializers.CharField(),
                            },
                        ),
                        help_text="Records refused one by one (the others were stored): drop these, never resend",
                    ),
                    "blocked_accepted": serializers.IntegerField(),
                },
            ),
            400: OpenApiResponse(
                _ERRORS, description="Body is not a batch (not JSON, no records list): refused whole"
            ),
            401: OpenApiResponse(_ERRORS, description="Unknown token, bad signature or stale timestamp"),
            413: OpenApiResponse(
                _ERRORS, description="Too many bytes or records; the message gives the limit"
            ),
        },
    )
    def post(self, request):  # pragma: no cover - documentation only
        raise NotImplementedError


# drf-spectacular documents views whose callback carries a DRF `cls`; requests still go to the plain view.
ingest_spend_view = ingest_spend
ingest_spend_view.cls = SpendIngestSchema  # type: ignore[attr-defined]
ingest_spend_view.initkwargs = {}  # type: ignore[attr-defined]
