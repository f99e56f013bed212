"""The Proxy model now lives in routing (routing 0006, same table): drop it from controlplane's state once
every foreign key points at routing.Proxy. Audit entries about proxies take the model's new label, so the
audit log's object type filter finds a proxy's whole history under one name."""

from django.db import migrations


def audit_label_to_routing(apps, schema_editor):
    relabel(apps, schema_editor.connection.alias, source="controlplane.Proxy", target="routing.Proxy")


def audit_label_to_controlplane(apps, schema_editor):
    relabel(apps, schema_editor.connection.alias, source="routing.Proxy", target="controlplane.Proxy")


def relabel(apps, alias, *, source, target):
    AuditEntry = apps.get_model("controlplane", "AuditEntry")
    AuditEntry.objects.using(alias).filter(object_type=source).update(object_type=target)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0010_proxy_in_routing"),
        ("controlplane", "0004_mask_webhook_urls_in_audit"),
        ("routing", "0006_proxy_from_controlplane"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="Proxy")]),
        migrations.RunPython(audit_label_to_routing, audit_label_to_controlplane),
    ]
