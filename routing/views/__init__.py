"""Pages of the routing app: policy.py (deployments, policies, keys, publish), fleet.py (proxies, bundles,
rollouts), experiment.py (threshold experiments, the what-if replay, threshold drafts)."""
