from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_delete, post_save

        # models can only be imported once the app registry is ready
        from billing import budgets, services, signals, tasks
        from billing.models import Budget
        from billing.selectors import routing as spend_reads
        from controlplane.models import Feature, Team
        from routing import providers

        providers.register_budget_states(budgets.budget_states_for_bundle)
        providers.register_spend_reader(spend_reads)

        # the services announce their work by signal; the tasks wrapping them queue it (no import cycle)
        signals.budgets_changed.connect(tasks.budgets_refresh_queue, dispatch_uid="billing-budgets-refresh")
        signals.enforced_spend_ingested.connect(
            tasks.budgets_check_queue, dispatch_uid="billing-budget-check"
        )
        signals.notifications_created.connect(
            tasks.notifications_send_queue, dispatch_uid="billing-notifications-send"
        )

        connection_created.connect(services._stage_ready, dispatch_uid="billing-stage")
        for model in (Team, Feature):
            post_save.connect(
                services.slug_cache_clear, sender=model, dispatch_uid=f"billing-slugs-save-{model.__name__}"
            )
            post_delete.connect(
                services.slug_cache_clear, sender=model, dispatch_uid=f"billing-slugs-delete-{model.__name__}"
            )
        # which budgets enforce is cached by each process for 10 s; an edit here is seen at once
        post_save.connect(
            services.enforced_budget_scope_clear, sender=Budget, dispatch_uid="billing-budget-scope-save"
        )
        post_delete.connect(
            services.enforced_budget_scope_clear, sender=Budget, dispatch_uid="billing-budget-scope-delete"
        )
