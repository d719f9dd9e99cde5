"""The serving hot path (annotation.http.hotpath) answers token clients' next and submit as Django does.

Each test sends the same requests through the project's ASGI application twice: once as it is
(the hot path takes them) and once through the same Django application with the hot path off,
and compares status, body bytes and headers. Transactional tests: the hot path's threads use
their own database connections, which see only committed rows.
"""

import asyncio
import functools
import json
import time
from collections import Counter

import pytest
from django.db.models import Count
from rest_framework.authtoken.models import Token

from annotation.http import hotpath
from annotation.http.hotpath import HotPath
from annotation.models import Assignment, Campaign, Item, Judgment, Role
from annotation.services.campaigns import campaign_set_status, membership_add
from annotation.services.serving import assignment_handles
from config.asgi import django_asgi_app, hot_path
from tests.websockets import communicator, run_async, snapshot

pytestmark = pytest.mark.django_db(transaction=True)

COMPARED_HEADERS = (
    b"content-type", b"allow", b"vary", b"x-frame-options", b"x-content-type-options", b"referrer-policy",
    b"cross-origin-opener-policy", b"www-authenticate",
)
django_only = HotPath(django_asgi_app, enabled=False)


@pytest.fixture(autouse=True)
def _pool_closed():
    yield
    hot_path.shutdown()  # its threads' connections, before the tables are flushed


def token_of(user) -> str:
    return Token.objects.get_or_create(user=user)[0].key


async def call(app, path: str, *, token: str | None = None, body: bytes = b"", headers=(), host=b"127.0.0.1"):
    """One POST through an ASGI application: (status, headers, body)."""
    sent = [(b"host", host), (b"content-length", str(len(body)).encode()), *headers]
    if token is not None:
        sent.append((b"authorization", f"Token {token}".encode()))
    if body and not any(k == b"content-type" for k, _ in headers):
        sent.append((b"content-type", b"application/json"))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": sent,
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
    }
    request = [{"type": "http.request", "body": body, "more_body": False}]
    out: dict = {"body": b""}

    async def receive():
        if request:
            return request.pop()
        await asyncio.sleep(3600)

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.lower(): v for k, v in message["headers"]}
        else:
            out["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return out["status"], out["headers"], out["body"]


def post(app, path: str, **kwargs):
    return run_async(functools.partial(call, app, path, **kwargs))


def next_path(campaign_id: int) -> str:
    return f"/api/v1/campaigns/{campaign_id}/next/"


def submit_path(assignment_id: int) -> str:
    return f"/api/v1/assignments/{assignment_id}/submit/"


def compared(headers: dict) -> dict:
    return {k: v for k, v in headers.items() if k in COMPARED_HEADERS}


def answer_for(assignment: dict) -> bytes:
    first = assignment["item"]["responses"][0]["id"]
    return json.dumps({"outcome": "preferred", "preferred_response_id": first, "strength": 2}).encode()


def test_next_and_submit_are_the_same_bytes_as_django(campaign, annotator):
    token = token_of(annotator)
    status, fast_headers, fast = post(hot_path, next_path(campaign.pk), token=token)
    assert status == 200, fast
    # Re-entering gives the open lease back, so Django's answer is the same assignment.
    status, slow_headers, slow = post(django_only, next_path(campaign.pk), token=token)
    assert status == 200
    assert fast == slow
    assert compared(fast_headers) == compared(slow_headers)
    assert fast_headers[b"x-content-type-options"] == b"nosniff"

    assignment = json.loads(fast)["assignment"]
    order = Assignment.objects.get(pk=assignment["id"]).display_order
    assert set(order) == set(
        Item.objects.get(pk=assignment["item"]["id"]).item_responses.values_list("response_id", flat=True)
    )
    handles = assignment_handles(assignment["id"], order)
    assert [r["id"] for r in assignment["item"]["responses"]] == [handles[rid] for rid in order]
    status, fast_headers, fast = post(hot_path, submit_path(assignment["id"]), token=token, body=answer_for(assignment))
    assert status == 201, fast
    # Submit is idempotent: Django answers the repeat with the stored judgment, as the hot path does.
    status, slow_headers, slow = post(django_only, submit_path(assignment["id"]), token=token,
                                      body=answer_for(assignment))
    assert status == 200
    assert fast == slow
    assert compared(fast_headers) == compared(slow_headers)
    status, _, again = post(hot_path, submit_path(assignment["id"]), token=token, body=answer_for(assignment))
    assert (status, again) == (200, slow)
    judgment = Judgment.objects.get()
    assert judgment.assignment_id == assignment["id"]
    assert judgment.preferred_response_id == order[0]
    assert judgment.display_order == order
    assert json.loads(again)["preferred_response_id"] == assignment["item"]["responses"][0]["id"]


def test_errors_are_the_same_as_django(campaign, annotator, annotator2, outsider, make_user, make_campaign):
    token = token_of(annotator)
    _, _, body = post(hot_path, next_path(campaign.pk), token=token)
    assignment = json.loads(body)["assignment"]
    inactive = make_user("gone", Role.ANNOTATOR)
    membership_add(campaign=campaign, user=inactive, role=Role.ANNOTATOR)
    inactive.is_active = False
    inactive.save()
    paused = make_campaign(items=1, annotators=[annotator], name="Paused")
    campaign_set_status(campaign=paused, status=Campaign.Status.PAUSED)

    cases = {
        "unknown token": (next_path(campaign.pk), {"token": "0" * 40}),
        "inactive user": (next_path(campaign.pk), {"token": token_of(inactive)}),
        "not a member": (next_path(campaign.pk), {"token": token_of(outsider)}),
        "no such campaign": (next_path(10**9), {"token": token}),
        "paused campaign": (next_path(paused.pk), {"token": token}),
        "someone else's assignment": (submit_path(assignment["id"]),
                                      {"token": token_of(annotator2), "body": answer_for(assignment)}),
        "unknown outcome": (submit_path(assignment["id"]), {"token": token, "body": b'{"outcome": "best"}'}),
        "not a response of the item": (submit_path(assignment["id"]), {
            "token": token, "body": b'{"outcome": "preferred", "preferred_response_id": 999999, "strength": 1}'}),
        "strength as text": (submit_path(assignment["id"]), {
            "token": token, "body": b'{"outcome": "tie", "strength": "much"}'}),
        "malformed JSON": (submit_path(assignment["id"]), {"token": token, "body": b'{"outcome": '}),
        "NaN": (submit_path(assignment["id"]), {"token": token, "body": b'{"outcome": "tie", "time_taken_ms": NaN}'}),
        "a list": (submit_path(assignment["id"]), {"token": token, "body": b"[1, 2]"}),
    }
    seen = {}
    for name, (path, kwargs) in cases.items():
        fast_status, fast_headers, fast = post(hot_path, path, **kwargs)
        slow_status, slow_headers, slow = post(django_only, path, **kwargs)
        assert (fast_status, fast) == (slow_status, slow), name
        assert compared(fast_headers) == compared(slow_headers), name
        assert set(json.loads(fast)) == {"message", "extra"}, name
        seen[name] = fast_status
    assert seen == {
        "unknown token": 401, "inactive user": 401, "not a member": 404, "no such campaign": 404,
        "paused campaign": 409, "someone else's assignment": 404, "unknown outcome": 400,
        "not a response of the item": 400, "strength as text": 400, "malformed JSON": 400, "NaN": 400,
        "a list": 400,
    }
    assert not Judgment.objects.exists()  # nothing was stored by any of them


def test_what_the_hot_path_leaves_to_django(campaign, annotator):
    token = token_of(annotator)
    take = hot_path._route

    def scope(path=None, method="POST", headers=None):
        path = path or next_path(campaign.pk)
        base = {b"host": b"127.0.0.1", b"authorization": f"Token {token}".encode(), b"content-length": b"0"}
        base.update(headers or {})
        return {"type": "http", "method": method, "path": path, "root_path": "",
                "headers": [(k, v) for k, v in base.items() if v is not None]}

    assert take(scope()) == ("next", campaign.pk, token)
    assert take(scope(path=submit_path(7), headers={b"content-type": b"application/json; charset=utf-8"})) == (
        "submit", 7, token)
    assert take(scope(method="GET")) is None
    assert take(scope(path="/api/v1/campaigns/1/")) is None
    assert take(scope(headers={b"authorization": None})) is None  # a browser session
    assert take(scope(headers={b"authorization": b"Bearer abc"})) is None
    assert take(scope(headers={b"authorization": b"Token a b"})) is None
    assert take(scope(path=submit_path(7), headers={b"content-type": b"application/x-www-form-urlencoded"})) is None
    assert take(scope(headers={b"content-length": None})) == ("next", campaign.pk, token)  # no body
    assert take(scope(path=submit_path(7), headers={b"content-type": b"application/json",
                                                   b"content-length": None})) is None
    assert take(scope(headers={b"transfer-encoding": b"chunked", b"content-length": None})) is None
    twice = scope()
    twice["headers"].append((b"authorization", b"Token 0123"))  # Django would join the two
    assert take(twice) is None
    assert take(scope(headers={b"content-length": b"99999999999"})) is None  # over Django's limit
    assert take(scope(headers={b"host": b"evil.example"})) is None

    # End to end: Django answers those (a disallowed Host gets its 400, no lease is made).
    status, _, _ = post(hot_path, next_path(campaign.pk), token=token, host=b"evil.example")
    assert status == 400
    assert not campaign.assignments.exists()


def test_an_unexpected_failure_is_a_json_500_and_stores_nothing(campaign, annotator, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(hotpath, "next_for", broken)
    status, headers, body = post(hot_path, next_path(campaign.pk), token=token_of(annotator))
    assert status == 500
    assert json.loads(body) == {"message": "Server error.", "extra": {}}
    assert headers[b"content-type"] == b"application/json"
    assert not campaign.assignments.exists()


def test_a_hot_path_submit_updates_live_progress_within_a_second(
    channel_layer, campaign, manager, annotator  # noqa: F811 -- the fixture imported above
):
    token = token_of(annotator)
    comm = communicator(manager, campaign.pk)

    async def run():
        connected, _ = await comm.connect()
        assert connected
        assert (await snapshot(comm))["done"] == 0
        _, _, body = await call(hot_path, next_path(campaign.pk), token=token)
        assignment = json.loads(body)["assignment"]
        assert (await snapshot(comm, timeout=1))["leased"] == 1
        status, _, _ = await call(hot_path, submit_path(assignment["id"]), token=token, body=answer_for(assignment))
        assert status == 201
        committed = time.monotonic()
        counts = await snapshot(comm, timeout=1)
        assert time.monotonic() - committed < 1
        assert (counts["done"], counts["leased"], counts["per_minute"]) == (1, 0, 1)
        await comm.disconnect()

    run_async(run)


def test_concurrent_clients_through_the_hot_path_end_exact(make_campaign, make_user):
    """24 clients at once through the ASGI application (the pool's threads race in the database)."""
    users = [make_user(f"racer{i}", Role.ANNOTATOR) for i in range(24)]
    campaign = make_campaign(items=40, overlap=3, annotators=users)
    tokens = [token_of(u) for u in users]

    async def annotator(token: str) -> tuple[int, list]:
        made, problems = 0, []
        while True:
            status, _, body = await call(hot_path, next_path(campaign.pk), token=token)
            if status != 200:
                problems.append(("next", status, body[:200]))
                return made, problems
            assignment = json.loads(body)["assignment"]
            if assignment is None:
                return made, problems
            status, _, body = await call(hot_path, submit_path(assignment["id"]), token=token,
                                         body=answer_for(assignment))
            if status != 201:
                problems.append(("submit", status, body[:200]))
            else:
                made += 1

    async def run():
        return await asyncio.gather(*(annotator(t) for t in tokens))

    results = run_async(run)
    assert [p for _, ps in results for p in ps] == []
    assert sum(made for made, _ in results) == 40 * 3
    per_item = Counter(dict(Item.objects.filter(campaign=campaign).annotate(n=Count("judgments")).values_list("pk", "n")))
    assert set(per_item.values()) == {3}
    pairs = Judgment.objects.values_list("item_id", "annotator_id")
    assert len(set(pairs)) == pairs.count() == 120
    assert not Item.objects.filter(campaign=campaign).exclude(lease_count=0).exists()
