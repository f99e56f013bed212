"""Django-free routing engine: complexity scorer, decision, bundle and spend-record schemas."""
