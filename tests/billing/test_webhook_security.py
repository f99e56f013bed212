"""Issue 14 item 9: alert webhooks never reach internal addresses, never follow redirects, escape Slack markup."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from billing import notifications
from billing.models import NotificationStatus
from controlplane import services as tenancy
from tests.billing.test_notifications import WebhookReceiver, alert, receiver  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fe80::1]/hook",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://10.0.0.5/hook",
        "http://192.168.1.1/hook",
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0:8000/",
    ],
)
def test_internal_webhook_targets_are_refused_when_saved(team, users, url):
    with pytest.raises(ValidationError) as refused:
        tenancy.team_update(actor=users["admin"], team=team, webhook_url=url)
    assert "webhook_url" in refused.value.message_dict


def test_loopback_is_refused_unless_the_setting_allows_it(client, team, users, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    client.force_login(users["admin"])
    form = {
        "name": team.name,
        "slug": team.slug,
        "timezone": "UTC",
        "webhook_url": "http://127.0.0.1:8000/admin/",
    }
    answer = client.post(reverse("team-detail", args=[team.code]), form, HTTP_HX_REQUEST="true")
    assert answer.status_code == 422 and "loopback" in answer.content.decode()
    form["webhook_url"] = "http://localhost:8000/"
    assert (
        client.post(reverse("team-detail", args=[team.code]), form, HTTP_HX_REQUEST="true").status_code == 422
    )
    team.refresh_from_db()
    assert team.webhook_url == ""


def test_a_stored_loopback_webhook_is_not_sent_when_loopback_is_not_allowed(alert, receiver, settings):  # noqa: F811
    settings.DATADOG_ENABLED = False
    alert.team.webhook_url = receiver.url  # stored before the rule existed: the send checks again
    alert.team.save()
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    (queued,) = notifications.notifications_queue(alert=alert, event="opened")
    notifications.notification_send(notification_id=queued.pk)
    queued.refresh_from_db()
    assert receiver.received == []
    assert "loopback" in queued.last_error and queued.status == NotificationStatus.PENDING


class _Redirector:
    """Answers every POST with a 307 to `target` (which would receive the signed body if followed)."""

    def __init__(self, target: str) -> None:
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.hits += 1
                self.send_response(307)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_webhook_redirects_are_not_followed(alert, receiver, settings):  # noqa: F811
    settings.DATADOG_ENABLED = False
    settings.WEBHOOK_ALLOW_LOOPBACK = True  # both servers are on 127.0.0.1 in this test
    redirector = _Redirector(receiver.url)
    try:
        alert.team.webhook_url = redirector.url
        alert.team.save()
        (queued,) = notifications.notifications_queue(alert=alert, event="opened")
        notifications.notification_send(notification_id=queued.pk)
    finally:
        redirector.server.shutdown()
        redirector.server.server_close()
    queued.refresh_from_db()
    assert redirector.hits == 1 and receiver.received == []
    assert "redirect" in queued.last_error


def test_feature_names_cannot_write_slack_markup(alert, receiver, settings):  # noqa: F811
    settings.DATADOG_ENABLED = False
    alert.title = "<!channel> <https://evil.test/login|Reset your password> & co"
    alert.save()
    alert.team.webhook_url = receiver.url
    alert.team.save()
    (queued,) = notifications.notifications_queue(alert=alert, event="opened")
    assert notifications.notification_send(notification_id=queued.pk) == NotificationStatus.SENT
    text = json.loads(receiver.received[0]["body"])["text"]
    assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt; &lt;https://evil.test/login|Reset your password&gt; &amp; co" in text
