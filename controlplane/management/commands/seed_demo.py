"""Create the demo organisation: three teams, their AI features, and one user per role. Safe to run again."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from controlplane import services
from controlplane.models import Feature, Membership, Role, Team

DEMO_TEAMS = [
    ("Support", "support", "Customer support tooling", "America/New_York"),
    ("Growth", "growth", "Marketing and lifecycle messaging", "Europe/Berlin"),
    ("Platform", "platform", "Developer platform and internal tools", "UTC"),
]
DEMO_FEATURES = [
    ("support", "Ticket summariser", "ticket-summary", "Summarises long support threads for agents."),
    ("support", "Reply drafter", "reply-draft", "Drafts first replies in the customer's language."),
    ("support", "Intent classifier", "intent-classify", "Tags incoming tickets by intent and urgency."),
    ("growth", "Email copywriter", "email-copy", "Writes lifecycle email variants."),
    ("growth", "Churn analyst", "churn-analysis", "Explains churn drivers from account notes."),
    ("platform", "Code review assistant", "code-review", "Reviews pull requests and explains risks."),
    ("platform", "Incident postmortem", "postmortem", "Drafts incident timelines and root-cause analyses."),
    ("platform", "Log extractor", "log-extract", "Pulls structured fields out of log lines."),
]
# username, org-wide role or (team slug, role), password. Demo-only credentials, printed for the newcomer.
DEMO_USERS = [
    ("admin", None, Role.ADMIN, "demo-admin-pass"),
    ("vp", None, Role.VIEWER, "demo-vp-pass"),
    ("mlops", None, Role.MLOPS, "demo-mlops-pass"),
    ("pm-support", "support", Role.PM, "demo-pm-pass"),
    ("pm-growth", "growth", Role.PM, "demo-pm-pass"),
]


class Command(BaseCommand):
    help = "Create (or update) the demo organisation: 3 teams, 8 features, one user per role."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        teams: dict[str, Team] = {}
        for name, slug, description, tz in DEMO_TEAMS:
            team = Team.objects.filter(slug=slug).first()
            teams[slug] = team or services.team_create(
                actor=None, name=name, slug=slug, description=description, timezone=tz
            )
        users = {}
        for username, team_slug, role, password in DEMO_USERS:
            user, created = user_model.objects.get_or_create(
                username=username, defaults={"email": f"{username}@demo.local"}
            )
            if created or not user.check_password(password):
                user.set_password(password)
                user.is_staff = role == Role.ADMIN
                user.is_superuser = False
                user.save()
            users[username] = user
            team = teams[team_slug] if team_slug else None
            if not Membership.objects.filter(user=user, team=team).exists():
                services.membership_create(actor=None, user=user, team=team, role=role)
        owners = {"support": users["pm-support"], "growth": users["pm-growth"], "platform": users["mlops"]}
        for team_slug, name, slug, description in DEMO_FEATURES:
            if not Feature.objects.filter(slug=slug).exists():
                services.feature_create(
                    actor=None,
                    team=teams[team_slug],
                    name=name,
                    slug=slug,
                    description=description,
                    owner=owners[team_slug],
                    is_active=True,
                )
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo organisation ready: {len(teams)} teams, {Feature.objects.count()} features."
            )
        )
        self.stdout.write("Demo logins (demo only, change them anywhere real):")
        for username, team_slug, role, password in DEMO_USERS:
            scope = f"team {team_slug}" if team_slug else "organisation"
            self.stdout.write(f"  {username:<11} {password:<17} {role.label} on {scope}")
