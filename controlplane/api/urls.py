"""The one API router; other apps register their viewsets here too."""

from rest_framework.routers import DefaultRouter

from controlplane.api.views import AuditEntryViewSet, FeatureViewSet, MembershipViewSet, TeamViewSet

router = DefaultRouter()
router.register("teams", TeamViewSet, basename="api-team")
router.register("features", FeatureViewSet, basename="api-feature")
router.register("memberships", MembershipViewSet, basename="api-membership")
router.register("audit", AuditEntryViewSet, basename="api-audit")
