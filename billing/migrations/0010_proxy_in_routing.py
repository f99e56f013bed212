"""Billing's foreign keys to the proxy follow it from controlplane to routing (routing 0006). State only:
the table and its rows stay where they are, so the columns and their constraints are unchanged."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0009_spend_event_signals"),
        ("routing", "0006_proxy_from_controlplane"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="alert",
                    name="proxy",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="alerts",
                        to="routing.proxy",
                    ),
                ),
                migrations.AlterField(
                    model_name="blockedcallcount",
                    name="proxy",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="routing.proxy",
                    ),
                ),
                migrations.AlterField(
                    model_name="ingestbatch",
                    name="proxy",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="routing.proxy",
                    ),
                ),
                migrations.AlterField(
                    model_name="spendevent",
                    name="proxy",
                    field=models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="routing.proxy",
                    ),
                ),
            ]
        ),
    ]
