"""What routing's services announce once their transaction commits; routing.tasks queues the work.

The tasks wrap the services (a task takes an id and calls one service), so a service cannot import the
task it needs queued without a cycle. It sends a signal instead, and `RoutingConfig.ready()` connects
the receiver in routing.tasks that queues the task.
"""

from django.dispatch import Signal

# A rollout was committed and waits for a worker; keyword argument: rollout_id.
rollout_created = Signal()
