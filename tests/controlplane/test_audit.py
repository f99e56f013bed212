import pytest
from django.urls import reverse

from controlplane import services
from controlplane.models import AuditAction, AuditEntry, Role

pytestmark = pytest.mark.django_db


def test_update_records_only_changed_fields_with_before_and_after(users, feature):
    services.feature_update(actor=users["admin"], feature=feature, name="Thread summariser", description="")
    entry = AuditEntry.objects.get(action=AuditAction.UPDATE)
    assert entry.changes == {"name": ["Ticket summariser", "Thread summariser"]}
    assert entry.actor == users["admin"] and entry.team_id == feature.team_id
    assert entry.object_type == "controlplane.Feature" and entry.object_id == str(feature.pk)


def test_no_op_update_writes_no_entry(users, feature):
    services.feature_update(actor=users["admin"], feature=feature, name=feature.name)
    assert not AuditEntry.objects.filter(action=AuditAction.UPDATE).exists()


def test_create_and_delete_membership_are_audited(users, team):
    membership = services.membership_create(
        actor=users["admin"], user=users["nobody"], team=team, role=Role.PM
    )
    services.membership_delete(actor=users["admin"], membership=membership)
    created, deleted = AuditEntry.objects.order_by("id")
    assert created.action == "create" and created.changes["role"] == [None, "pm"]
    assert deleted.action == "delete" and deleted.changes["role"] == ["pm", None]


def test_failed_change_leaves_no_entry_and_no_row(users, feature, team):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.feature_create(actor=users["admin"], team=team, name="X", slug=feature.slug)
    assert AuditEntry.objects.count() == 0


def test_request_id_is_stored_from_the_header(client, users, feature):
    client.force_login(users["admin"])
    client.post(
        reverse("feature-detail", args=[feature.code]),
        {"team": feature.team_id, "name": "Renamed", "slug": feature.slug, "is_active": "on"},
        HTTP_HX_REQUEST="true",
        HTTP_X_REQUEST_ID="req-123",
    )
    assert AuditEntry.objects.get().request_id == "req-123"


def test_audit_page_filters_and_scopes(client, users, feature, other_feature):
    services.feature_update(actor=users["admin"], feature=feature, name="A")
    services.feature_update(actor=users["admin"], feature=other_feature, name="B")
    client.force_login(users["pm"])  # team-scoped: sees its team only
    body = client.get(reverse("audit-list")).content.decode()
    assert "Support / A" in body and "Growth / B" not in body
    client.force_login(users["admin"])
    body = client.get(reverse("audit-list"), {"team": "growth"}, HTTP_HX_REQUEST="true").content.decode()
    assert "Growth / B" in body and "Support / A" not in body
