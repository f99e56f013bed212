"""Ingest under hostile or odd input (issue 14): records refused one by one, attribution checked, counters of refused calls."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from billing.models import BlockedCallCount, SpendEvent
from routing.engine import signing
from tests.billing.conftest import batch_body, issue_key, make_record, post_batch, signed_headers

pytestmark = pytest.mark.django_db


def stored_event_ids() -> set[str]:
    return set(SpendEvent.objects.values_list("event_id", flat=True))


def test_record_charging_another_teams_feature_is_refused_alone(client, proxy, feature, other_feature):
    good = make_record()
    forged = make_record(team="support", feature=other_feature.slug)  # team A's proxy names team B's feature
    response = post_batch(client, [good, forged])
    assert response.status_code == 200, response.content
    assert response.json()["rejected"] == [
        {
            "index": 1,
            "field": "feature",
            "reason": "feature 'email-copy' does not belong to team 'support': "
            "a record is charged only to its own team's features",
        }
    ]
    assert stored_event_ids() == {good.event_id}
    assert not SpendEvent.objects.filter(feature=other_feature).exists()


def test_too_long_call_id_drops_only_that_record(client, proxy, feature):
    """LiteLLM accepts call ids up to 256 characters; the schema keeps 128: the batch's other records land."""
    goods = [make_record() for _ in range(3)]
    long_id = make_record(call_id="c" * 200)
    response = post_batch(client, [goods[0], long_id, *goods[1:]])
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["accepted"] == 3
    assert [(e["index"], e["field"]) for e in body["rejected"]] == [(1, "call_id")]
    assert "at most 128" in body["rejected"][0]["reason"]
    assert stored_event_ids() == {g.event_id for g in goods}


def test_feature_renamed_while_records_are_in_flight_still_lands(client, proxy, team, feature):
    """Records carry the feature's public code from the bundle's key entry: a slug rename does not lose them."""
    in_flight = make_record(team_code=str(team.code), feature_code=str(feature.code))
    feature.slug = "ticket-summary-v2"
    feature.save()
    response = post_batch(client, [in_flight])
    assert response.status_code == 200, response.content
    assert response.json()["rejected"] == []
    assert SpendEvent.objects.get().feature_id == feature.pk


def test_unknown_feature_code_is_refused_by_code(client, proxy, team, feature):
    lost = make_record(feature_code=str(uuid.uuid4()))
    response = post_batch(client, [lost, make_record()])
    (error,) = response.json()["rejected"]
    assert (error["index"], error["field"]) == (0, "feature")
    assert "unknown feature code" in error["reason"]
    assert SpendEvent.objects.count() == 1


def test_mismatched_team_code_is_refused(client, proxy, team, other_team, feature):
    forged = make_record(team_code=str(other_team.code), feature_code=str(feature.code))
    response = post_batch(client, [forged])
    assert [e["field"] for e in response.json()["rejected"]] == ["feature"]
    assert not SpendEvent.objects.exists()


def digits_in(zero: str, value: int) -> str:
    """`value` written with the Unicode digits that start at `zero` (int() reads them, ASCII does not)."""
    return "".join(chr(ord(zero) + int(d)) for d in str(value))


@pytest.mark.parametrize(
    "spelling",
    [
        lambda now: digits_in("\u0660", now),  # Arabic-Indic
        lambda now: digits_in("\uff10", now),  # fullwidth
        lambda now: str(now)[:-1] + "\u0661",  # one non-ASCII digit at the end
        lambda now: f"+{now}",
        lambda now: f" {now}",
    ],
    ids=["arabic-indic", "fullwidth", "one-digit", "plus-sign", "space"],
)
def test_current_timestamp_in_non_ascii_digits_is_401_not_500(proxy, feature, spelling):
    """Item 16: int() accepted the digits, the clock check passed, then signing the ASCII header crashed."""
    client = Client(raise_request_exception=False)
    body = batch_body([make_record()])
    headers = signed_headers(body)
    headers[signing.TIMESTAMP_HEADER] = spelling(int(time.time()))
    response = post_batch(client, body=body, headers=headers)
    assert response.status_code == 401, response.content
    assert response.json()["errors"][0]["field"] == signing.TIMESTAMP_HEADER
    assert not SpendEvent.objects.exists()


def test_non_ascii_signature_is_401_not_500(proxy, feature):
    client = Client(raise_request_exception=False)
    body = batch_body([make_record()])
    headers = signed_headers(body)
    headers[signing.SIGNATURE_HEADER] = "v1=\u00e9" * 3
    response = post_batch(client, body=body, headers=headers)
    assert response.status_code == 401, response.content
    assert response.json()["errors"][0]["field"] == signing.SIGNATURE_HEADER


NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def at_noon():
    """'Today' on the feature page is the UTC day: pin the clock so the test never straddles midnight."""
    with time_machine.travel(NOON, tick=False):
        yield NOON


def blocked_counter(feature, *, count: int, reason: str = "budget", **extra):
    now = datetime.now(UTC)
    return {
        "schema": 1,
        "kind": "blocked",
        "event_id": uuid.uuid4().hex,
        "team": feature.team.slug,
        "feature": feature.slug,
        "reason": reason,
        "count": count,
        "window_start": (now - timedelta(seconds=1)).isoformat(),
        "window_end": now.isoformat(),
        **extra,
    }


def test_blocked_call_counters_are_stored_once_and_shown_on_the_feature_page(
    client, proxy, feature, other_feature, users, at_noon
):
    counters = [
        blocked_counter(feature, count=2990),
        blocked_counter(feature, count=10, reason="revoked"),
        blocked_counter(feature, count=4, reason="bogus"),  # refused on its own
        blocked_counter(other_feature, count=7, team=feature.team.slug),  # forged team: refused
    ]
    first = post_batch(client, [*counters, make_record()])
    assert first.status_code == 200, first.content
    assert first.json()["blocked_accepted"] == 2 and first.json()["accepted"] == 1
    assert sorted((e["index"], e["field"]) for e in first.json()["rejected"]) == [
        (2, "reason"),
        (3, "feature"),
    ]
    again = post_batch(client, counters[:2])  # the shipper re-sends after a lost answer
    assert again.json()["blocked_accepted"] == 0 and again.json()["duplicates"] == 2
    assert sum(BlockedCallCount.objects.values_list("count", flat=True)) == 3000
    client.force_login(users["admin"])
    page = client.get(f"/features/{feature.code}/spend/").content.decode()
    assert "Blocked 3000 times today (UTC): 2990 over budget, 10 revoked key." in page


def test_feature_page_says_zero_when_nothing_was_blocked(client, feature, users, at_noon):
    client.force_login(users["admin"])
    assert "Blocked 0 times today (UTC)." in client.get(f"/features/{feature.code}/spend/").content.decode()


def test_a_blocked_counter_of_yesterday_is_not_counted_today(client, proxy, feature, users, at_noon):
    old = blocked_counter(feature, count=5)
    yesterday = datetime.now(UTC) - timedelta(days=1, hours=1)
    old["window_start"] = (yesterday - timedelta(seconds=1)).isoformat()
    old["window_end"] = yesterday.isoformat()
    assert post_batch(client, [old]).json()["blocked_accepted"] == 1
    client.force_login(users["admin"])
    assert "Blocked 0 times today" in client.get(f"/features/{feature.code}/spend/").content.decode()


def test_ingest_of_a_batch_with_every_record_bad_stores_nothing_and_answers_200(client, proxy, feature):
    response = post_batch(client, [make_record(feature="nope"), make_record(call_id="x" * 129)])
    assert response.status_code == 200
    assert {e["index"] for e in response.json()["rejected"]} == {0, 1}
    assert not SpendEvent.objects.exists()


def test_a_proxy_cannot_report_for_a_feature_that_was_never_issued_a_key(client, proxy, team, feature):
    from tests.factories import FeatureFactory

    unkeyed = FeatureFactory(team=team, slug="never-served", name="Never served")
    response = post_batch(client, [make_record(feature=unkeyed.slug), make_record()])
    (error,) = response.json()["rejected"]
    assert (error["index"], error["field"]) == (0, "feature") and "no feature key" in error["reason"]
    issue_key(unkeyed)  # issued now: its traffic counts at once (no stale negative cache)
    assert post_batch(client, [make_record(feature=unkeyed.slug)]).json()["rejected"] == []
    assert SpendEvent.objects.filter(feature=unkeyed).count() == 1


@pytest.mark.parametrize("text", ["\x00", "arm\x00x"])
def test_text_postgres_cannot_store_is_refused_alone_not_a_500(client, proxy, feature, text):
    """Found by the hostile-input fuzzer: a NUL byte made the COPY fail and the whole batch answer 500,
    which the shipper retries forever: one record would have blocked a proxy's spool."""
    response = post_batch(client, [make_record(), make_record(arm=text)])
    assert response.status_code == 200, response.content
    assert [(e["index"], e["field"]) for e in response.json()["rejected"]] == [(1, "arm")]
    assert SpendEvent.objects.count() == 1


# --- the ingest key is not derivable from the proxy's token -----------------------------------------


def _registered(feature):
    from routing.services import fleet as fleet_services
    from tests.billing.conftest import issue_key

    issue_key(feature)
    return fleet_services.proxy_create(actor=None, name="proxy-signed", base_url="http://127.0.0.1:9")


def _post_as(client, records, *, bearer: str, key: str):
    body = batch_body(records)
    ts = str(int(time.time()))
    headers = {
        "Authorization": f"Bearer {bearer}",
        signing.TIMESTAMP_HEADER: ts,
        signing.SIGNATURE_HEADER: signing.sign(key, ts, body),
    }
    return post_batch(client, body=body, headers=headers)


def test_a_leaked_bundle_pull_token_cannot_forge_spend(client, feature):
    """The HMAC key used to derive from the token, so whoever read the token (plain-HTTP pull, a push,
    the control plane's push credential) could sign spend. Now it derives from a secret that never travels."""
    from routing.services.fleet import decrypt_token

    proxy, credential = _registered(feature)
    token, _ = signing.split_credential(credential)
    assert decrypt_token(proxy.push_credential) == token  # what a database + SECRET_KEY reader gets
    forged = make_record(cost_usd="99.0000000000")
    answer = _post_as(client, [forged], bearer=token, key=signing.signing_key(token))
    assert answer.status_code == 401, answer.content
    whole = credential  # someone who sends the whole credential as the bearer is refused too
    assert _post_as(client, [forged], bearer=whole, key=signing.ingest_key(whole)).status_code == 401
    assert not SpendEvent.objects.exists()
    honest = make_record()
    answer = _post_as(client, [honest], bearer=token, key=signing.ingest_key(credential))
    assert answer.status_code == 200 and answer.json()["accepted"] == 1


def test_rotation_keeps_what_was_accepted_and_the_new_credential_signs(client, feature):
    from routing.services import fleet as fleet_services

    proxy, old = _registered(feature)
    before = make_record()
    assert (
        _post_as(
            client, [before], bearer=signing.split_credential(old)[0], key=signing.ingest_key(old)
        ).json()["accepted"]
        == 1
    )
    new = fleet_services.proxy_rotate_token(actor=None, proxy=proxy)
    in_spool = make_record()  # signed with the old credential after rotation: refused, so the spool keeps it
    assert (
        _post_as(
            client, [in_spool], bearer=signing.split_credential(old)[0], key=signing.ingest_key(old)
        ).status_code
        == 401
    )
    answer = _post_as(
        client, [in_spool], bearer=signing.split_credential(new)[0], key=signing.ingest_key(new)
    )
    assert answer.status_code == 200 and answer.json()["accepted"] == 1
    assert stored_event_ids() == {before.event_id, in_spool.event_id}
    assert not fleet_services.proxy_has_legacy_credential(proxy)


def test_a_credential_issued_before_ingest_secrets_still_signs_until_rotated(client, proxy, feature):
    """Upgrade path: a one-part token keeps working (its key derives from it) and is flagged for rotation."""
    from routing.services import fleet as fleet_services
    from routing.services.fleet import encrypt_token
    from tests.billing.conftest import PROXY_TOKEN

    proxy.push_credential = encrypt_token(PROXY_TOKEN)
    proxy.save()
    record = make_record()
    assert post_batch(client, [record]).json()["accepted"] == 1
    assert fleet_services.proxy_has_legacy_credential(proxy)
