"""Django-free routing engine: complexity scorer, decision, bundle and spend-record schemas."""

from routing.engine.scorer import ComplexityScorer

__all__ = ["ComplexityScorer"]
