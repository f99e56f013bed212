"""Celery tasks of the routing app (rollouts, revocations, threshold experiments): thin wrappers that take ids
and call one service."""

from __future__ import annotations

from celery import shared_task

from routing import services
from routing.models import Experiment, ExperimentStatus, Rollout


@shared_task(ignore_result=True, acks_late=True)
def rollout_run(rollout_id: int) -> None:
    """Push a rollout's bundle to its proxies (canary first); quiet when the rollout is gone or already ran."""
    if not Rollout.objects.filter(pk=rollout_id).exists():
        return
    services.rollout_execute(rollout_id=rollout_id)


def rollout_queue(sender: object, *, rollout_id: int, **kwargs: object) -> None:
    """Receiver of routing.signals.rollout_created (connected in RoutingConfig.ready()): run it on a worker."""
    rollout_run.delay(rollout_id)


@shared_task(ignore_result=True)
def rollout_reap() -> None:
    """Fail rollouts whose worker died, so they do not block the next publish."""
    services.rollout_reap()


@shared_task(ignore_result=True)
def revocations_sync() -> None:
    """Ship revoked keys that did not reach the fleet's bundle yet (their publish met a running rollout)."""
    services.revocations_sync()


@shared_task(ignore_result=True)
def experiments_evaluate() -> None:
    """Evaluate every running experiment; a breached guardrail stops it (beat, every minute)."""
    from routing.services import experiments  # at call time: scipy (~2 s) stays out of django.setup()

    experiments.experiments_evaluate_running()


@shared_task(ignore_result=True)
def experiment_evaluate_task(experiment_id: int) -> None:
    """Evaluate one experiment; quiet when it is gone or no longer running."""
    from routing.services import experiments  # at call time: scipy (~2 s) stays out of django.setup()

    experiment = Experiment.objects.filter(pk=experiment_id, status=ExperimentStatus.RUNNING).first()
    if experiment is None:
        return
    experiments.experiment_evaluate(experiment=experiment)


@shared_task(ignore_result=True)
def adjustments_propose() -> None:
    """Fit each feature's score adjustment from its labelled outcomes, saved as a proposal for MLOps (beat, daily)."""
    # at call time: numpy and the fitting tools stay out of django.setup(), which imports this module
    from routing.services import adjustments

    adjustments.adjustments_propose()
