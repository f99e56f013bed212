from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        # tasks import models and services, which need the app registry ready
        from routing import signals, tasks

        # the services announce a rollout by signal; the task wrapping them queues it (no import cycle)
        signals.rollout_created.connect(tasks.rollout_queue, dispatch_uid="routing-rollout-run")
