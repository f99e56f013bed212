"""Spend ingest endpoint: a DRF view without DRF's auth, throttles or parsers (the proxy's signature is the
auth and the raw body is what is signed), documented in the OpenAPI schema."""

from __future__ import annotations

from django.http import JsonResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from billing import services
from routing.engine import signing

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


class SpendIngestView(APIView):
    """POST /api/v1/ingest/spend: a proxy's signed batch of spend records (contract in docs/spend.md)."""

    authentication_classes: list = []  # the batch's HMAC signature is checked by the service
    permission_classes: list = []
    throttle_classes: list = []  # proxies ship in bursts after an outage: the size limits bound a batch
    parser_classes: list = []  # the signature covers the raw bytes: never parse before it is checked

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
    def post(self, request: Request) -> JsonResponse:
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
