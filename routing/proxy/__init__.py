"""LiteLLM proxy plugin (Django-free): feature-key auth, routing hook, spool and shipper, bundle endpoint."""
