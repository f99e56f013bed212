"""Audit entries written before webhook URLs were treated as secrets: mask the URLs they hold."""

from django.db import migrations


def mask_existing(apps, schema_editor):
    from controlplane.services import SECRET_FIELDS, mask_secret

    AuditEntry = apps.get_model("controlplane", "AuditEntry")
    for entry in AuditEntry.objects.filter(object_type="controlplane.Team").iterator():
        changes = entry.changes or {}
        secret = SECRET_FIELDS & changes.keys()
        if not secret:
            continue
        for name in secret:
            changes[name] = [mask_secret(v) if v and "(hidden" not in str(v) else v for v in changes[name]]
        entry.changes = changes
        entry.save(update_fields=["changes"])


class Migration(migrations.Migration):
    dependencies = [("controlplane", "0003_proxy_target_bundle")]

    operations = [migrations.RunPython(mask_existing, migrations.RunPython.noop)]
