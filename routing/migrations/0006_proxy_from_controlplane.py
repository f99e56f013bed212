"""The Proxy model moves from controlplane to routing, the fleet's home. State only: the table keeps its
name (Meta.db_table = "controlplane_proxy"), so no row moves. Foreign keys from routing follow here,
billing's in billing 0010; controlplane 0005 then drops the old model from its state.

The content type is renamed too, so permissions and admin log entries on proxies stay attached.
"""

import uuid

import django.db.models.deletion
from django.db import migrations, models


def content_type_to_routing(apps, schema_editor):
    move_content_type(apps, schema_editor.connection.alias, source="controlplane", target="routing")


def content_type_to_controlplane(apps, schema_editor):
    move_content_type(apps, schema_editor.connection.alias, source="routing", target="controlplane")


def move_content_type(apps, alias, *, source, target):
    ContentType = apps.get_model("contenttypes", "ContentType")
    types = ContentType.objects.db_manager(alias)
    if types.filter(app_label=target, model="proxy").exists():
        return  # already made for the new label (post_migrate of a partial run): keep both, change none
    types.filter(app_label=source, model="proxy").update(app_label=target)
    types.clear_cache()


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("controlplane", "0004_mask_webhook_urls_in_audit"),
        ("routing", "0005_adjustment_proposals"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Proxy",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        ("code", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                        ("name", models.CharField(max_length=100, unique=True)),
                        (
                            "base_url",
                            models.URLField(
                                help_text="Where the control plane pushes bundles, e.g. http://127.0.0.1:4000"
                            ),
                        ),
                        ("pool", models.CharField(default="default", max_length=64)),
                        ("is_canary", models.BooleanField(default=False)),
                        ("is_active", models.BooleanField(default=True)),
                        ("token_hash", models.CharField(editable=False, max_length=64, unique=True)),
                        (
                            "signing_key",
                            models.CharField(
                                editable=False, help_text="HMAC key derived from the token.", max_length=64
                            ),
                        ),
                        ("last_heartbeat_at", models.DateTimeField(blank=True, null=True)),
                        ("applied_version", models.CharField(blank=True, max_length=80)),
                        ("applied_hash", models.CharField(blank=True, max_length=80)),
                        ("last_report", models.JSONField(blank=True, default=dict)),
                        (
                            "push_credential",
                            models.TextField(
                                blank=True,
                                editable=False,
                                help_text="The token, encrypted with a key derived from SECRET_KEY, to push bundles.",
                            ),
                        ),
                        (
                            "target_bundle",
                            models.ForeignKey(
                                blank=True,
                                help_text="The bundle this proxy should run; empty: its pool's current bundle.",
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to="routing.bundle",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name_plural": "proxies",
                        "db_table": "controlplane_proxy",
                        "ordering": ["pool", "name"],
                    },
                ),
                migrations.AlterField(
                    model_name="rollouttarget",
                    name="proxy",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="rollout_targets",
                        to="routing.proxy",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunPython(content_type_to_routing, content_type_to_controlplane),
            ],
        ),
    ]
