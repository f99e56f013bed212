"""What billing's services announce once their transaction commits; billing.tasks queues the work.

The tasks wrap the services (a task takes an id and calls one service), so a service cannot import the
task it needs queued without a cycle. It sends a signal instead, and `BillingConfig.ready()` connects
the receivers in billing.tasks that queue the tasks.
"""

from django.dispatch import Signal

# A budget was created, edited or deleted: budget states are due for a refresh now, not at the next minute.
budgets_changed = Signal()

# Spend of a team or feature whose budget degrades or blocks was stored: check budgets within seconds.
enforced_spend_ingested = Signal()

# Notifications were created and wait to be sent; keyword argument: notification_ids.
notifications_created = Signal()
