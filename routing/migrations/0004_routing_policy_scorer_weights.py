"""RoutingPolicy.scorer_weights: which scorer's scale the thresholds are on.

Policies that exist already had their thresholds set on complexity-v1's scale (bundles without
`scorer_weights` run v1), so they get complexity-v1; new policies get the shipped default.
"""

from django.db import migrations, models

import routing.models


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0003_routing_policy_breaker"),
    ]

    operations = [
        migrations.AddField(
            model_name="routingpolicy",
            name="scorer_weights",
            field=models.CharField(
                blank=True,
                default="complexity-v1",
                help_text="Scorer weights version the thresholds are set for (default policy only; every feature uses it).",
                max_length=32,
                validators=[routing.models.validate_scorer_weights],
            ),
        ),
        migrations.AlterField(
            model_name="routingpolicy",
            name="scorer_weights",
            field=models.CharField(
                blank=True,
                default=routing.models.default_scorer_weights,
                help_text="Scorer weights version the thresholds are set for (default policy only; every feature uses it).",
                max_length=32,
                validators=[routing.models.validate_scorer_weights],
            ),
        ),
    ]
