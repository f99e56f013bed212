"""Pages of the routing app and the fleet pages (included at the site root by controlplane/urls.py)."""

from django.urls import path

from routing.views import adjustment as adjustment_views
from routing.views import experiment as experiment_views
from routing.views import fleet as fleet_views
from routing.views import policy as views

urlpatterns = [
    path("routing/", views.routing_page, name="routing"),
    path("routing/deployments/", views.deployment_create, name="routing-deployment-create"),
    path("routing/deployments/<uuid:code>/", views.deployment_detail, name="routing-deployment"),
    path("routing/policies/", views.policy_create, name="routing-policy-create"),
    path("routing/policies/<uuid:code>/", views.policy_detail, name="routing-policy"),
    path("routing/policies/<uuid:code>/delete/", views.policy_delete, name="routing-policy-delete"),
    path("routing/keys/", views.key_create, name="routing-key-create"),
    path("routing/keys/<uuid:code>/revoke/", views.key_revoke, name="routing-key-revoke"),
    path("routing/publish/", views.publish, name="routing-publish"),
    path("routing/publish/preview/", views.publish_preview, name="routing-publish-preview"),
    path("fleet/", fleet_views.fleet_page, name="fleet"),
    path("fleet/proxies/<uuid:code>/", fleet_views.proxy_detail, name="fleet-proxy"),
    path(
        "fleet/proxies/<uuid:code>/rotate-token/", fleet_views.proxy_rotate_token, name="fleet-proxy-rotate"
    ),
    path("fleet/rollouts/<uuid:code>/", fleet_views.rollout_detail, name="fleet-rollout"),
    path("fleet/bundles/", fleet_views.bundle_list, name="bundle-list"),
    path("fleet/bundles/<uuid:code>/", fleet_views.bundle_detail, name="bundle-detail"),
    path("fleet/bundles/<uuid:code>/rollout/", fleet_views.bundle_rollout, name="bundle-rollout"),
]

# Threshold experiments and the what-if replay (routing/views/experiment.py).
urlpatterns += [
    path("experiments/", experiment_views.experiment_list, name="experiments"),
    path("experiments/new/", experiment_views.experiment_create, name="experiment-create"),
    path("experiments/<uuid:code>/", experiment_views.experiment_detail, name="experiment-detail"),
    path(
        "experiments/<uuid:code>/<str:action>/",
        experiment_views.experiment_action,
        name="experiment-action",
    ),
    path("routing/whatif/", experiment_views.whatif_index, name="whatif-index"),
    path("routing/whatif/<uuid:code>/", experiment_views.whatif_page, name="whatif"),
    path(
        "routing/threshold-drafts/<uuid:code>/<str:action>/",
        experiment_views.threshold_draft_action,
        name="threshold-draft-action",
    ),
]

# Per-feature score adjustments fitted from outcomes (routing/views/adjustment.py).
urlpatterns += [
    path("routing/adjustments/", adjustment_views.adjustment_section, name="routing-adjustments"),
    path(
        "routing/adjustments/<uuid:code>/<str:action>/",
        adjustment_views.adjustment_action,
        name="routing-adjustment-action",
    ),
]
