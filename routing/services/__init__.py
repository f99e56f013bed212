"""Services of the routing app, one module per subject:

- policy.py: deployments, policies, feature keys, bundle publish and rollouts (re-exported here, so
  `routing.services.bundle_publish` works);
- fleet.py: the proxy registry, push credentials, heartbeats and health;
- experiments.py, experiment_stats.py: threshold experiments and their statistics;
- whatif.py: the what-if replay of past calls under another threshold;
- adjustments.py: each feature's score adjustment fitted from its outcomes, proposed, approved into its policy.
"""

from routing.services.policy import (
    DEPLOYMENT_FIELDS,
    ENDPOINT_FIELDS,
    FEATURE_KEY_PREFIX,
    KEY_FIELDS,
    POLICY_FIELDS,
    PUSH_PATH,
    STATUS_PATH,
    BundleRejected,
    PushResult,
    StalePreview,
    bundle_public_key,
    bundle_publish,
    bundle_publish_patch,
    bundle_publish_revocations,
    bundle_signed_document,
    deployment_create,
    deployment_update,
    feature_key_create,
    feature_key_revoke,
    policy_create,
    policy_delete,
    policy_update,
    push_bundle,
    revocations_sync,
    rollout_execute,
    rollout_reap,
    rollout_rollback,
    rollout_start,
)

__all__ = [
    "DEPLOYMENT_FIELDS",
    "ENDPOINT_FIELDS",
    "FEATURE_KEY_PREFIX",
    "KEY_FIELDS",
    "POLICY_FIELDS",
    "PUSH_PATH",
    "STATUS_PATH",
    "BundleRejected",
    "StalePreview",
    "PushResult",
    "bundle_public_key",
    "bundle_publish",
    "bundle_publish_patch",
    "bundle_publish_revocations",
    "bundle_signed_document",
    "deployment_create",
    "deployment_update",
    "feature_key_create",
    "feature_key_revoke",
    "policy_create",
    "policy_delete",
    "policy_update",
    "push_bundle",
    "revocations_sync",
    "rollout_execute",
    "rollout_reap",
    "rollout_rollback",
    "rollout_start",
]
