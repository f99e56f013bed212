"""Celery tasks of threshold experiments: thin wrappers that take ids and call one service."""

from __future__ import annotations

from celery import shared_task

from routing import experiments as services
from routing.experiment_models import Experiment, ExperimentStatus

__all__ = ["experiment_evaluate_task", "experiments_evaluate"]


@shared_task(ignore_result=True)
def experiments_evaluate() -> None:
    """Evaluate every running experiment; a breached guardrail stops it (beat, every minute)."""
    services.experiments_evaluate_running()


@shared_task(ignore_result=True)
def experiment_evaluate_task(experiment_id: int) -> None:
    """Evaluate one experiment; quiet when it is gone or no longer running."""
    experiment = Experiment.objects.filter(pk=experiment_id, status=ExperimentStatus.RUNNING).first()
    if experiment is None:
        return
    services.experiment_evaluate(experiment=experiment)
