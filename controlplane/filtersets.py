"""Filters shared by the UI lists and the API."""

import django_filters

from controlplane.models import AuditAction, AuditEntry, Feature, Membership, Role, Team


class AuditEntryFilterSet(django_filters.FilterSet):
    action = django_filters.ChoiceFilter(choices=AuditAction.choices)
    object_type = django_filters.CharFilter(lookup_expr="iexact")
    actor = django_filters.CharFilter(field_name="actor_name", lookup_expr="iexact")
    team = django_filters.CharFilter(field_name="team__slug")
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    q = django_filters.CharFilter(method="search", label="Search")

    class Meta:
        model = AuditEntry
        fields = ["action", "object_type", "actor", "team", "since", "until", "q"]

    def search(self, queryset, name, value):  # type: ignore[no-untyped-def]
        """Free text over what changed: the object's name, the actor, the note and the request id."""
        from django.db.models import Q

        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(object_repr__icontains=value)
            | Q(actor_name__icontains=value)
            | Q(note__icontains=value)
            | Q(object_type__icontains=value)
            | Q(request_id__istartswith=value)
        )


class FeatureFilterSet(django_filters.FilterSet):
    team = django_filters.CharFilter(field_name="team__slug")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Feature
        fields = ["team", "is_active", "q"]


class TeamFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Team
        fields = ["q"]


class MembershipFilterSet(django_filters.FilterSet):
    team = django_filters.CharFilter(field_name="team__slug")
    role = django_filters.ChoiceFilter(choices=Role.choices)

    class Meta:
        model = Membership
        fields = ["team", "role"]
