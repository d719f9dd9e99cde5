"""Live progress over the websocket: who may listen, the snapshot, and updates after a submit.

The websocket helpers are in tests/websockets.py, the channel-layer fixtures in tests/conftest.py.
Transactional tests: services publish on commit, which a test wrapped in a transaction never does.
"""

import asyncio
import time

import pytest
from channels.db import database_sync_to_async

from annotation import events
from annotation.http.consumers import (
    CLOSE_FORBIDDEN,
    CampaignProgressConsumer,
)
from annotation.models import Role
from annotation.services.campaigns import membership_add
from tests.websockets import communicator, lease, run_async, snapshot, submit

pytestmark = pytest.mark.django_db(transaction=True)


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
