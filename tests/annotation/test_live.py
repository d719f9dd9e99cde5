"""Live progress over the websocket: who may listen, the snapshot, and updates after a submit.

The async code runs under `async_to_sync` inside ordinary sync tests (no pytest-asyncio needed),
in a thread of its own (`run_async`): once a browser test has started Playwright's sync API, this
thread has an event loop, where async_to_sync refuses to run.
Transactional tests: services publish on commit, which a test wrapped in a transaction never does.
"""

import asyncio
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connections
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotation import events
from annotation.http.consumers import (
    CLOSE_FORBIDDEN,
    CampaignProgressConsumer,
    campaign_progress_path,
)
from annotation.models import Role
from annotation.services.campaigns import membership_add
from config.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1")
REDIS_HOST = "redis://127.0.0.1:6379/0"
IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
REDIS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # A prefix of our own: flushing between tests touches nothing else on this Redis.
        "CONFIG": {"hosts": [REDIS_HOST], "prefix": f"arbiter-test-{os.getpid()}"},
    }
}


class WebsocketCommunicator(ApplicationCommunicator):
    """The part of channels.testing.WebsocketCommunicator these tests use.

    channels.testing cannot be imported here: its package imports daphne, which Arbiter does
    not install (uvicorn serves ASGI).
    """

    def __init__(self, application, path: str, headers: list[tuple[bytes, bytes]] | None = None):
        scope = {"type": "websocket", "path": path, "query_string": b"", "headers": headers or [], "subprotocols": []}
        super().__init__(application, scope)

    async def connect(self, timeout: float = 2) -> tuple[bool, object]:
        """Return (True, subprotocol) when accepted, (False, close code) when refused."""
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        assert response["type"] == "websocket.accept", response
        return True, response.get("subprotocol")

    async def receive_json_from(self, timeout: float = 1) -> dict:
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


def run_async(fn, *args):
    """Run `async_to_sync(fn)(*args)` in a fresh thread and return its result (or raise its error)."""

    def call():
        try:
            return async_to_sync(fn)(*args)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result(timeout=60)


def _redis_reachable() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_HOST, socket_connect_timeout=0.5).ping())
    except Exception:
        return False


@pytest.fixture(params=["in_memory", "redis"])
def channel_layer(request, settings):
    """Each channel layer in turn; flushed before and after the test."""
    if request.param == "redis":
        if not _redis_reachable():
            pytest.skip(f"Redis is not reachable at {REDIS_HOST}")
        settings.CHANNEL_LAYERS = REDIS
    else:
        settings.CHANNEL_LAYERS = IN_MEMORY
    layer = get_channel_layer()
    run_async(layer.flush)
    yield layer
    run_async(get_channel_layer().flush)


@pytest.fixture
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = IN_MEMORY
    layer = get_channel_layer()
    run_async(layer.flush)
    yield layer
    run_async(layer.flush)


def communicator(user, campaign_id: int, *, origin: tuple[bytes, bytes] | None = ORIGIN) -> WebsocketCommunicator:
    """A websocket client against the project's ASGI application, logged in as `user` (or not)."""
    headers = [origin] if origin else []
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return WebsocketCommunicator(application, campaign_progress_path(campaign_id), headers=headers)


async def snapshot(comm: WebsocketCommunicator, timeout: float = 2) -> dict:
    message = await comm.receive_json_from(timeout=timeout)
    assert message["type"] == "progress"
    return message["counts"]


def lease(campaign, annotator) -> dict:
    """The annotator takes the next item through the API (which calls the serving service)."""
    client = APIClient()
    client.force_authenticate(annotator)
    res = client.post(reverse("api:assignment_next", kwargs={"campaign_id": campaign.pk}), {}, format="json")
    assert res.status_code == 200, res.content
    return res.json()["assignment"]


def submit(assignment: dict, annotator) -> None:
    client = APIClient()
    client.force_authenticate(annotator)
    body = {"outcome": "preferred", "preferred_response_id": assignment["item"]["responses"][0]["id"], "strength": 2}
    res = client.post(reverse("api:judgment_submit", kwargs={"assignment_id": assignment["id"]}), body, format="json")
    assert res.status_code == 201, res.content


def test_manager_gets_a_snapshot_then_an_update_within_a_second_of_a_submit(channel_layer, campaign, manager, annotator):
    comm = communicator(manager, campaign.pk)

    async def run():
        connected, _ = await comm.connect()
        assert connected
        counts = await snapshot(comm)
        assert counts == {
            "items": 5, "wanted": 10, "done": 0, "leased": 0, "complete": 0, "remaining": 10, "per_minute": 0
        }

        assignment = await database_sync_to_async(lease)(campaign, annotator)
        counts = await snapshot(comm, timeout=1)
        assert (counts["leased"], counts["done"]) == (1, 0)

        await database_sync_to_async(submit)(assignment, annotator)
        committed = time.monotonic()
        counts = await snapshot(comm, timeout=1)
        assert time.monotonic() - committed < 1
        assert counts["done"] == 1
        assert counts["leased"] == 0
        assert counts["remaining"] == 9
        assert counts["per_minute"] == 1
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()

    run_async(run)


def test_researcher_may_listen(in_memory_layer, campaign, researcher):
    comm = communicator(researcher, campaign.pk)

    async def run():
        connected, _ = await comm.connect()
        assert connected
        assert (await snapshot(comm))["wanted"] == 10
        await comm.disconnect()

    run_async(run)


def test_superuser_may_listen(in_memory_layer, campaign, make_user):
    admin = make_user("root", None)
    admin.is_superuser = True
    admin.save()

    comm = communicator(admin, campaign.pk)

    async def run():
        assert (await comm.connect())[0]
        assert (await snapshot(comm))["items"] == 5
        await comm.disconnect()

    run_async(run)


def _assert_refused(user, campaign_id: int) -> None:
    comm = communicator(user, campaign_id)

    async def run():
        connected, _ = await comm.connect()
        # Accepted, then closed with 4403 before anything is sent: the page stops reconnecting.
        assert connected
        assert await comm.receive_output(timeout=2) == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}
        await comm.disconnect()  # what the server sends once the close handshake is done

    run_async(run)


def test_annotator_is_refused(in_memory_layer, campaign, annotator):
    _assert_refused(annotator, campaign.pk)


def test_outsider_is_refused(in_memory_layer, campaign, outsider):
    _assert_refused(outsider, campaign.pk)


def test_anonymous_is_refused(in_memory_layer, campaign):
    _assert_refused(None, campaign.pk)


def test_manager_of_another_campaign_is_refused(in_memory_layer, campaign, make_user, make_campaign):
    other = make_user("other-manager", Role.MANAGER)
    _assert_refused(other, campaign.pk)
    # ... and a campaign that does not exist is refused the same way.
    _assert_refused(other, 999_999)


def test_member_demoted_to_annotator_is_refused(in_memory_layer, campaign, make_user):
    user = make_user("demoted", Role.MANAGER)
    membership_add(campaign=campaign, user=user, role=Role.ANNOTATOR)
    _assert_refused(user, campaign.pk)


def test_refused_socket_does_not_join_the_group(in_memory_layer, campaign, annotator):
    _assert_refused(annotator, campaign.pk)
    assert not in_memory_layer.groups.get(events.campaign_group(campaign.pk))


def test_other_origin_is_refused_before_accept(in_memory_layer, campaign, manager):
    comm = communicator(manager, campaign.pk, origin=(b"origin", b"https://evil.example"))

    async def run():
        connected, _ = await comm.connect()
        assert not connected

    run_async(run)


def test_a_burst_of_changes_costs_one_recount(in_memory_layer, campaign, manager, monkeypatch):
    """300 changes in a burst are coalesced into a recount or two, not 300."""
    calls = []
    from annotation.http import consumers

    real = consumers.campaign_live_counts

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(consumers, "campaign_live_counts", counting)

    comm = communicator(manager, campaign.pk)

    async def run():
        assert (await comm.connect())[0]
        await snapshot(comm)
        assert len(calls) == 1
        for _ in range(300):
            await in_memory_layer.group_send(events.campaign_group(campaign.pk), {"type": "campaign.changed"})
        await snapshot(comm, timeout=5)
        # Drain: a slow machine may let the burst span two refresh windows, never 300.
        while not await comm.receive_nothing(timeout=CampaignProgressConsumer.REFRESH_DELAY * 3):
            await snapshot(comm, timeout=5)
        assert 2 <= len(calls) <= 4
        await comm.disconnect()

    run_async(run)


def test_a_change_during_a_recount_is_not_lost(in_memory_layer, campaign, manager, annotator):
    comm = communicator(manager, campaign.pk)

    async def run():
        assert (await comm.connect())[0]
        await snapshot(comm)
        group = events.campaign_group(campaign.pk)
        await in_memory_layer.group_send(group, {"type": "campaign.changed"})
        await snapshot(comm, timeout=1)
        # A later change (a lease) gets its own snapshot showing it.
        await database_sync_to_async(lease)(campaign, annotator)
        assert (await snapshot(comm, timeout=1))["leased"] == 1
        await comm.disconnect()

    run_async(run)


def test_disconnect_leaves_the_group(in_memory_layer, campaign, manager):
    group = events.campaign_group(campaign.pk)
    comm = communicator(manager, campaign.pk)

    async def run():
        assert (await comm.connect())[0]
        await snapshot(comm)
        assert len(in_memory_layer.groups.get(group, {})) == 1
        await in_memory_layer.group_send(group, {"type": "campaign.changed"})
        await comm.disconnect()  # with a refresh pending: it is cancelled, nothing is left running
        assert not in_memory_layer.groups.get(group)

    run_async(run)


def test_two_dashboards_both_update(in_memory_layer, campaign, manager, researcher, annotator):
    a, b = communicator(manager, campaign.pk), communicator(researcher, campaign.pk)

    async def run():
        assert (await a.connect())[0] and (await b.connect())[0]
        await snapshot(a), await snapshot(b)
        assignment = await database_sync_to_async(lease)(campaign, annotator)
        await snapshot(a, timeout=1), await snapshot(b, timeout=1)
        await database_sync_to_async(submit)(assignment, annotator)
        done = await asyncio.gather(snapshot(a, timeout=1), snapshot(b, timeout=1))
        assert [c["done"] for c in done] == [1, 1]
        await a.disconnect()
        await b.disconnect()

    run_async(run)
