"""API v1 endpoints of the routing app and the fleet (included under /api/v1/ by controlplane/urls.py)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from routing.api import experiments, views
from routing.api.fleet import FleetBundleView, FleetHeartbeatView

router = SimpleRouter()  # the controlplane DefaultRouter already serves the API root
router.register("routing/deployments", views.DeploymentViewSet, basename="api-deployment")
router.register("routing/policies", views.PolicyViewSet, basename="api-policy")
router.register("routing/keys", views.FeatureKeyViewSet, basename="api-feature-key")
router.register("fleet/bundles", views.BundleViewSet, basename="api-bundle")
router.register("fleet/rollouts", views.RolloutViewSet, basename="api-rollout")
router.register("fleet/proxies", views.ProxyViewSet, basename="api-proxy")
router.register("routing/experiments", experiments.ExperimentViewSet, basename="api-experiment")

urlpatterns = [
    path("fleet/bundle", FleetBundleView.as_view(), name="api-fleet-bundle"),
    path("fleet/heartbeat", FleetHeartbeatView.as_view(), name="api-fleet-heartbeat"),
    path("feedback", experiments.FeedbackView.as_view(), name="api-feedback"),
    *router.urls,
]
