"""Forms of the routing app: policy.py (deployments, policies, keys, publish), fleet.py (proxies, rollouts)."""
