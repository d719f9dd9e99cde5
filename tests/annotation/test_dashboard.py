"""The manager dashboard: its numbers on a seeded campaign, who may see it, and its live pushes.

The seeded campaign has four regular pairs (model-x first, model-y second), overlap 3, and one
gold check served first to everyone. Three annotators judge everything; `ann3` answers against
the others and is the member a manager excludes. Every figure below is worked out by hand in
the comments next to it.
"""

import asyncio
import math
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation import dashboard as dashboard_module
from annotation import events
from annotation.dashboard import LIVE_BOOTSTRAP_ROUNDS, campaign_dashboard
from annotation.http.consumers import (
    CLOSE_FORBIDDEN,
    CampaignDashboardConsumer,
    campaign_dashboard_path,
)
from annotation.models import Assignment, Campaign, Judgment, Membership, Role
from annotation.services.campaigns import campaign_create, campaign_set_status, membership_add
from annotation.services.imports import items_import
from annotation.services.serving import assignment_lease_next, judgment_submit
from config.asgi import application
from tests.conftest import jsonl, pair_rows
from tests.websockets import ORIGIN, WebsocketCommunicator, lease, run_async, submit

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal

# Outcome per annotator and item: "x" prefers model-x (the item's first response), "y" model-y.
ANSWERS = {
    "ann": {"p0": "x", "p1": "x", "p2": "y", "p3": "x"},
    "ann2": {"p0": "x", "p1": "y", "p2": "y", "p3": "x"},
    "ann3": {"p0": "y", "p1": "y", "p2": "y", "p3": "y"},
}
# Time taken per judgment, in ms (gold checks carry none).
TIMES = {
    "ann": {"p0": 1000, "p1": 3000, "p2": 5000, "p3": 7000},
    "ann2": {"p0": 2000, "p1": 2000, "p2": 8000, "p3": 8000},
    "ann3": {"p0": 20000, "p1": 20000, "p2": 20000, "p3": 20000},
}
GOLD_RIGHT = {"ann": True, "ann2": False, "ann3": True}


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    centre = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(k * (n - k) / n + z * z / 4)
    return centre - half, centre + half


def _judge_everything(campaign: Campaign, user) -> None:
    """Judge the gold check, then every regular item as ANSWERS says, through the services.

    The screen order is fixed before each submit (the service shuffles it) so that first-shown
    wins can be counted by hand: `ann` and `ann2` see model-x first, `ann3` sees model-y first.
    """
    name = user.get_username()
    while (a := assignment_lease_next(campaign_id=campaign.pk, annotator=user)) is not None:
        item = a.item
        by_model = {r.model_name: r.pk for r in item.responses.all()}
        x, y = by_model["model-x"], by_model["model-y"]
        order = [y, x] if name == "ann3" else [x, y]
        Assignment.objects.filter(pk=a.pk).update(display_order=order)
        if item.is_gold:  # the gold answer is model-x
            preferred, ms = (x if GOLD_RIGHT[name] else y), None
        else:
            key = item.prompt.external_id
            preferred, ms = (x if ANSWERS[name][key] == "x" else y), TIMES[name][key]
        judgment_submit(
            assignment_id=a.pk, annotator=user,
            answer={"outcome": "preferred", "preferred_response_id": preferred, "strength": 2, "time_taken_ms": ms},
        )


@pytest.fixture
def seeded(manager, make_user):
    """The seeded campaign, fully judged; returns (campaign, {username: user})."""
    campaign = campaign_create(created_by=manager, name="Seeded", overlap=3, gold_rate=1.0)
    rows = pair_rows(4)
    gold = pair_rows(1, prefix="gold")[0] | {"gold": {"preferred": 0}}
    items_import(campaign=campaign, lines=jsonl([*rows, gold]))
    campaign_set_status(campaign=campaign, status=Campaign.Status.ACTIVE)
    users = {}
    for name in ("ann", "ann2", "ann3"):
        users[name] = make_user(name, Role.ANNOTATOR)
        membership_add(campaign=campaign, user=users[name], role=Role.ANNOTATOR, cap=10 if name == "ann" else None)
    for user in users.values():
        _judge_everything(campaign, user)
    campaign.refresh_from_db()
    return campaign, users


def _exclude(campaign, user, excluded: bool = True) -> None:
    Membership.objects.filter(campaign=campaign, user=user).update(excluded=excluded)


# --- the payload ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_progress_and_per_annotator_counts(seeded):
    """Progress counts regular judgments; each annotator's row has counts, cap, pause, gold and median time."""
    campaign, users = seeded
    Membership.objects.filter(campaign=campaign, user=users["ann2"]).update(is_active=False)
    _exclude(campaign, users["ann3"])
    d = campaign_dashboard(campaign=campaign)

    # 4 items x overlap 3 = 12 judgments wanted; 3 annotators x 4 items made; all complete.
    assert d["progress"] == {
        "items": 4, "items_complete": 4, "judgments": 12, "wanted": 12, "leased": 0,
        "per_minute": 12, "share": 1.0,
    }
    assert d["judgment_count"] == 15  # 12 regular + 3 gold checks
    rows = {r["username"]: r for r in d["annotators"]}
    assert list(rows) == ["ann", "ann2", "ann3"]  # the manager and researchers judged nothing
    # 4 regular + 1 gold each. Medians: ann (3+5)/2 = 4 s, ann2 (2+8)/2 = 5 s, ann3 20 s.
    assert rows["ann"] | {"user_id": 0} == {
        "user_id": 0, "username": "ann", "role": "annotator", "judged": 5, "cap": 10, "paused": False,
        "excluded": False, "median_seconds": 4.0, "timed": 4, "gold": {"correct": 1, "n": 1, "accuracy": 1.0},
    }
    assert (rows["ann2"]["paused"], rows["ann2"]["median_seconds"], rows["ann2"]["gold"]) == (
        True, 5.0, {"correct": 0, "n": 1, "accuracy": 0.0}
    )
    # An excluded member is still counted and shown, marked excluded.
    assert (rows["ann3"]["excluded"], rows["ann3"]["judged"], rows["ann3"]["median_seconds"]) == (True, 5, 20.0)
    assert d["excluded"] == ["ann3"]
    # Overall median over included members: 1 2 2 3 5 7 8 8 -> (3 + 5) / 2 = 4 s.
    assert d["time_per_item"] == {"median_seconds": 4.0, "n": 8}


@pytest.mark.django_db
def test_agreement_bias_and_leaderboard_leave_excluded_members_out(seeded):
    """With ann3 excluded the quality figures are those of ann and ann2 alone, and differ from all three."""
    campaign, users = seeded
    _exclude(campaign, users["ann3"])
    d = campaign_dashboard(campaign=campaign)

    # ann / ann2 on p0..p3: (x,x) (x,y) (y,y) (x,x). Coincidences: o_xx = 4, o_yy = 2,
    # o_xy = o_yx = 1; n_x = 5, n_y = 3, n = 8. alpha = 1 - (n-1) * 2 / (2 * 5 * 3) = 16/30.
    agreement = d["agreement"]
    assert agreement["method"] == "krippendorff_alpha_nominal"
    assert agreement["value"] == pytest.approx(16 / 30, abs=1e-4)
    assert (agreement["items"], agreement["judgments"], agreement["annotators"]) == (4, 8, 2)

    # Both saw model-x first, and model-x won 5 of their 8 decisive judgments.
    bias = d["position_bias"]
    low, high = wilson(5, 8)
    assert (bias["decisive"], bias["first_wins"], bias["ties"]) == (8, 5, 0)
    assert bias["rate"] == 0.625
    assert (bias["ci_low"], bias["ci_high"]) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))
    # Two-sided exact binomial test: 2 * P(X >= 5 | 8, 1/2) = 2 * (56 + 28 + 8 + 1) / 256.
    assert bias["p_value"] == pytest.approx(2 * 93 / 256, abs=1e-4)

    # Bradley–Terry with two models is P(x beats y) = 5/8: Elo 1000 +- 200 log10(5/3).
    board = d["leaderboard"]
    assert board["bootstrap_rounds"] == LIVE_BOOTSTRAP_ROUNDS
    rows = {r["model"]: r for r in board["rows"]}
    assert [r["model"] for r in board["rows"]] == ["model-x", "model-y"]
    assert rows["model-x"]["score"] == pytest.approx(1000 + 200 * math.log10(5 / 3), abs=0.01)
    assert rows["model-y"]["score"] == pytest.approx(1000 - 200 * math.log10(5 / 3), abs=0.01)
    for r in rows.values():
        assert r["n"] == 8
        assert r["ci_low"] <= r["score"] <= r["ci_high"]
        assert r["ci_low"] < r["ci_high"]

    # Included again, ann3 changes every figure. Units (x,x,y) (x,y,y) (y,y,y) (x,x,y):
    # o_xx = 2, o_yy = 4, o_xy = o_yx = 3, n_x = 5, n_y = 7, n = 12 -> 1 - 11 * 6 / 70 = 4/70.
    _exclude(campaign, users["ann3"], excluded=False)
    d = campaign_dashboard(campaign=campaign)
    assert d["agreement"]["value"] == pytest.approx(4 / 70, abs=1e-4)
    assert d["agreement"]["annotators"] == 3
    # ann3 saw model-y first and chose it every time: 5 + 4 first-shown wins of 12.
    assert (d["position_bias"]["decisive"], d["position_bias"]["first_wins"]) == (12, 9)
    rows = {r["model"]: r for r in d["leaderboard"]["rows"]}
    assert rows["model-x"]["score"] == pytest.approx(1000 + 200 * math.log10(5 / 7), abs=0.01)
    assert rows["model-x"]["n"] == 12
    # ... and the overall median time: 1 2 2 3 5 7 8 8 20 20 20 20 -> (7 + 8) / 2.
    assert d["time_per_item"] == {"median_seconds": 7.5, "n": 12}


@pytest.mark.django_db
def test_throughput_counts_judgments_per_minute(seeded):
    """Judgments fall in the minute they were made; empty minutes are zeros; the line spans 30 minutes."""
    campaign, users = seeded
    now = timezone.now().replace(second=30, microsecond=0)
    minute = now.replace(second=0)
    Judgment.objects.filter(annotator=users["ann"]).update(created_at=minute - timedelta(minutes=10) + timedelta(seconds=5))
    Judgment.objects.exclude(annotator=users["ann"]).update(created_at=minute - timedelta(minutes=2))
    t = campaign_dashboard(campaign=campaign, now=now)["throughput"]

    assert (t["bucket_seconds"], t["window_minutes"]) == (60, 180)
    assert len(t["buckets"]) == 30  # the earliest judgment is 10 minutes old: the 30-minute minimum shows
    assert t["buckets"][-1]["t"] == minute.isoformat()
    assert t["buckets"][0]["t"] == (minute - timedelta(minutes=29)).isoformat()
    counts = [b["count"] for b in t["buckets"]]
    assert counts[-11] == 5  # ann's five, ten minutes ago
    assert counts[-3] == 10  # ann2's and ann3's, two minutes ago
    assert sum(counts) == t["total"] == 15 and t["peak"] == 10

    # Judgments older than the window are not drawn; a window with an old first judgment grows to it.
    Judgment.objects.filter(annotator=users["ann"]).update(created_at=minute - timedelta(hours=4))
    Judgment.objects.filter(annotator=users["ann2"]).update(created_at=minute - timedelta(minutes=90))
    t = campaign_dashboard(campaign=campaign, now=now)["throughput"]
    assert len(t["buckets"]) == 91
    assert t["buckets"][0] == {"t": (minute - timedelta(minutes=90)).isoformat(), "count": 5}
    assert t["total"] == 10


@pytest.mark.django_db
def test_empty_campaign_has_a_payload_with_nothing_undefined_made_up(make_campaign):
    """Before any judgment: zeros, and None (not NaN) where a figure is undefined."""
    campaign = make_campaign(items=3, overlap=2)
    d = campaign_dashboard(campaign=campaign)
    assert d["progress"]["judgments"] == 0 and d["progress"]["wanted"] == 6 and d["progress"]["share"] == 0.0
    assert d["agreement"]["value"] is None and d["agreement"]["items"] == 0
    assert d["position_bias"]["rate"] is None and d["position_bias"]["p_value"] is None
    assert d["leaderboard"]["rows"] == [] and "Fewer than two models" in d["leaderboard"]["note"]
    assert d["time_per_item"] == {"median_seconds": None, "n": 0}
    assert d["throughput"]["total"] == 0 and len(d["throughput"]["buckets"]) == 30


@pytest.mark.django_db
def test_quality_part_is_cached_per_judgment_state(seeded, monkeypatch, make_user):
    """An unchanged campaign is aggregated once; a new judgment or an exclusion earns one recomputation."""
    campaign, users = seeded
    calls = []
    real = dashboard_module.campaign_quality

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(dashboard_module, "campaign_quality", counting)
    first = campaign_dashboard(campaign=campaign)
    again = campaign_dashboard(campaign=campaign)
    assert len(calls) == 1
    assert again["leaderboard"] == first["leaderboard"]

    _exclude(campaign, users["ann3"])
    campaign_dashboard(campaign=campaign)
    assert len(calls) == 2

    late = make_user("late", Role.ANNOTATOR)
    membership_add(campaign=campaign, user=late, role=Role.ANNOTATOR)
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=late)  # the gold check: still served
    judgment_submit(assignment_id=a.pk, annotator=late, answer={"outcome": "tie", "time_taken_ms": 500})
    d = campaign_dashboard(campaign=campaign)
    assert len(calls) == 3
    assert {r["username"]: r["median_seconds"] for r in d["annotators"]}["late"] == 0.5


@pytest.fixture(autouse=True)
def _computations_count_as_fast(monkeypatch):
    """On a loaded test machine a small campaign's aggregation must not pass for a large one's."""
    monkeypatch.setattr(dashboard_module, "SLOW_SECONDS", 30.0)


def _slowed(monkeypatch, calls: list) -> None:
    """Make the real quality computation take as long as a large campaign's does."""
    real = dashboard_module.campaign_quality
    monkeypatch.setattr(dashboard_module, "SLOW_SECONDS", 0.25)

    def slow(**kwargs):
        calls.append(kwargs)
        time.sleep(0.25)
        return real(**kwargs)

    monkeypatch.setattr(dashboard_module, "campaign_quality", slow)


@pytest.mark.django_db
def test_slow_quality_figures_are_served_stale_until_due(seeded, monkeypatch, make_user):
    """A large campaign is not re-aggregated on every judgment: the last figures are shown, marked stale."""
    campaign, _ = seeded
    calls = []
    _slowed(monkeypatch, calls)
    first = campaign_dashboard(campaign=campaign)
    assert first["quality_as_of"]["stale"] is False
    assert first["quality_as_of"]["judgment_count"] == 15
    assert first["quality_as_of"]["compute_seconds"] >= dashboard_module.SLOW_SECONDS

    late = make_user("late", Role.ANNOTATOR)
    membership_add(campaign=campaign, user=late, role=Role.ANNOTATOR)
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=late)
    judgment_submit(assignment_id=a.pk, annotator=late, answer={"outcome": "tie", "time_taken_ms": 500})
    stale = campaign_dashboard(campaign=campaign)
    assert len(calls) == 1
    assert stale["judgment_count"] == 16  # the live part is current ...
    assert {r["username"]: r["judged"] for r in stale["annotators"]}["late"] == 1
    assert stale["quality_as_of"]["stale"] is True  # ... the quality figures are the last ones, marked
    assert stale["quality_as_of"]["judgment_count"] == 15
    assert 0 < stale["quality_as_of"]["refresh_in"] <= dashboard_module.STALE_FACTOR * first["quality_as_of"]["compute_seconds"]

    time.sleep(stale["quality_as_of"]["refresh_in"] + 0.05)
    fresh = campaign_dashboard(campaign=campaign)
    assert len(calls) == 2
    assert fresh["quality_as_of"] | {"compute_seconds": 0} == {
        "judgment_count": 16, "stale": False, "refresh_in": None, "compute_seconds": 0
    }
    assert {r["username"]: r["median_seconds"] for r in fresh["annotators"]}["late"] == 0.5


@pytest.mark.django_db
def test_ranking_campaign_expands_rankings(manager, annotator, annotator2):
    """A K-wise campaign's rankings are expanded into pairs for agreement and the leaderboard."""
    campaign = campaign_create(created_by=manager, name="Ranked", kind="ranking", overlap=2)
    rows = [
        {"id": f"r{i}", "messages": [{"role": "user", "content": f"Q{i}"}],
         "responses": [{"content": f"{m} {i}", "model": m} for m in ("m-a", "m-b", "m-c")]}
        for i in range(2)
    ]
    items_import(campaign=campaign, lines=jsonl(rows))
    campaign_set_status(campaign=campaign, status=Campaign.Status.ACTIVE)
    for user in (annotator, annotator2):
        membership_add(campaign=campaign, user=user, role=Role.ANNOTATOR)
        while (a := assignment_lease_next(campaign_id=campaign.pk, annotator=user)) is not None:
            by_model = {r.model_name: r.pk for r in a.item.responses.all()}
            ranking = [[by_model["m-a"]], [by_model["m-b"]], [by_model["m-c"]]]
            judgment_submit(assignment_id=a.pk, annotator=user, answer={"outcome": "ranked", "ranking": ranking})
    d = campaign_dashboard(campaign=campaign)
    # 2 items x 3 pairs, each judged by both annotators the same way: perfect agreement.
    assert (d["agreement"]["value"], d["agreement"]["items"], d["agreement"]["judgments"]) == (1.0, 6, 12)
    assert [r["model"] for r in d["leaderboard"]["rows"]] == ["m-a", "m-b", "m-c"]
    assert d["leaderboard"]["prior"] > 0  # m-a never lost: the note says the scores are regularized
    assert d["position_bias"]["decisive"] == 0  # rankings have no "shown first" of a pair


# --- the REST endpoint ------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_returns_the_dashboard(seeded, manager, client_for):
    campaign, _ = seeded
    res = client_for(manager).get(reverse("api:campaign_dashboard", kwargs={"campaign_id": campaign.pk}))
    assert res.status_code == 200, res.content
    body = res.json()
    expected = campaign_dashboard(campaign=campaign)
    assert set(body) == set(expected)
    for key in ("progress", "agreement", "position_bias", "leaderboard", "time_per_item", "excluded", "campaign"):
        assert body[key] == expected[key], key
    assert body["annotators"] == expected["annotators"]


@pytest.mark.django_db
def test_api_refuses_researchers_and_annotators_with_the_reason(campaign, researcher, annotator, make_user, client_for):
    url = reverse("api:campaign_dashboard", kwargs={"campaign_id": campaign.pk})
    # A global manager who is a researcher in this campaign passes IsManager and is refused by role.
    promoted = make_user("promoted", Role.MANAGER)
    membership_add(campaign=campaign, user=promoted, role=Role.RESEARCHER)
    res = client_for(promoted).get(url)
    assert res.status_code == 403
    assert res.json()["message"] == "Your role in this campaign does not allow this."
    assert client_for(researcher).get(url).status_code == 403
    assert client_for(annotator).get(url).status_code == 403
    outsider_manager = make_user("elsewhere", Role.MANAGER)
    res = client_for(outsider_manager).get(url)
    assert (res.status_code, res.json()["message"]) == (404, "Campaign not found.")


# --- the page -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_page_renders_the_payload_and_links_back(seeded, manager):
    campaign, _ = seeded
    client = Client()
    client.force_login(manager)
    res = client.get(reverse("campaign_dashboard", kwargs={"campaign_id": campaign.pk}))
    assert res.status_code == 200
    html = res.content.decode()
    assert f'data-live-url="{campaign_dashboard_path(campaign.pk)}"' in html
    assert 'id="dashboard-data"' in html  # the first payload, for the charts before the socket opens
    # The table is there without JavaScript, the excluded member marked.
    assert 'data-username="ann3" data-excluded="false"' in html
    detail = client.get(reverse("campaign_detail", kwargs={"campaign_id": campaign.pk})).content.decode()
    assert reverse("campaign_dashboard", kwargs={"campaign_id": campaign.pk}) in detail


@pytest.mark.django_db
def test_page_escapes_model_names_and_usernames(manager, make_user):
    """Model names come from imported data: the page never renders them as markup."""
    campaign = campaign_create(created_by=manager, name="Escapes", overlap=1)
    evil = "<img src=x onerror=alert(1)>"
    items_import(campaign=campaign, lines=jsonl(pair_rows(2, models=(evil, "</script><script>alert(2)</script>"))))
    campaign_set_status(campaign=campaign, status=Campaign.Status.ACTIVE)
    judge = make_user("judge", Role.ANNOTATOR)
    membership_add(campaign=campaign, user=judge, role=Role.ANNOTATOR)
    while (a := assignment_lease_next(campaign_id=campaign.pk, annotator=judge)) is not None:
        judgment_submit(assignment_id=a.pk, annotator=judge,
                        answer={"outcome": "preferred", "preferred_response_id": a.display_order[0], "strength": 1})
    client = Client()
    client.force_login(manager)
    html = client.get(reverse("campaign_dashboard", kwargs={"campaign_id": campaign.pk})).content.decode()
    assert evil not in html
    assert "<script>alert(2)" not in html


# --- the websocket --------------------------------------------------------------------------------

live = pytest.mark.django_db(transaction=True)


def dashboard_socket(user, campaign_id: int) -> WebsocketCommunicator:
    headers = [ORIGIN]
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return WebsocketCommunicator(application, campaign_dashboard_path(campaign_id), headers=headers)


async def payload(comm: WebsocketCommunicator, timeout: float = 3) -> dict:
    message = await comm.receive_json_from(timeout=timeout)
    assert message["type"] == "dashboard"
    return message["dashboard"]


@live
def test_manager_gets_the_dashboard_then_an_update_within_a_second_of_a_submit(
    channel_layer, campaign, manager, annotator
):
    comm = dashboard_socket(manager, campaign.pk)

    async def run():
        assert (await comm.connect())[0]
        d = await payload(comm)
        assert (d["progress"]["judgments"], d["progress"]["wanted"]) == (0, 10)
        assert d["throughput"]["total"] == 0

        assignment = await database_sync_to_async(lease)(campaign, annotator)
        assert (await payload(comm, timeout=2))["progress"]["leased"] == 1

        await database_sync_to_async(submit)(assignment, annotator)
        committed = time.monotonic()
        d = await payload(comm, timeout=2)
        assert time.monotonic() - committed < 1.5  # generous: the consumer waits at most 0.5 s
        assert (d["progress"]["judgments"], d["progress"]["leased"]) == (1, 0)
        assert d["throughput"]["total"] == 1
        assert {r["username"]: r["judged"] for r in d["annotators"]} == {"ann": 1, "ann2": 0}
        assert await comm.receive_nothing(timeout=0.7)
        await comm.disconnect()

    run_async(run)


@live
def test_superuser_may_watch(in_memory_layer, campaign, make_user):
    root = get_user_model().objects.create_superuser(username="root", password="x" * 12, email="r@example.com")
    comm = dashboard_socket(root, campaign.pk)

    async def run():
        assert (await comm.connect())[0]
        assert (await payload(comm))["campaign"]["id"] == campaign.pk
        await comm.disconnect()

    run_async(run)


def _assert_refused(user, campaign_id: int) -> None:
    comm = dashboard_socket(user, campaign_id)

    async def run():
        assert (await comm.connect())[0]
        assert await comm.receive_output(timeout=2) == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}
        await comm.disconnect()

    run_async(run)


@live
@pytest.mark.parametrize("who", ["annotator", "researcher", "outsider", "anonymous", "other_manager"])
def test_only_the_campaigns_managers_may_watch(who, in_memory_layer, campaign, annotator, researcher,
                                               outsider, make_user):
    """Researchers see progress but not the dashboard (usernames, times, gold); everyone else is refused."""
    users = {"annotator": annotator, "researcher": researcher, "outsider": outsider, "anonymous": None,
             "other_manager": make_user("other-manager", Role.MANAGER)}
    _assert_refused(users[who], campaign.pk)
    assert not in_memory_layer.groups.get(events.campaign_group(campaign.pk))


@live
def test_a_missing_campaign_is_refused(in_memory_layer, manager):
    _assert_refused(manager, 999_999)


@live
def test_a_burst_is_throttled_and_ends_with_the_latest_state(in_memory_layer, campaign, manager, annotator,
                                                             annotator2, monkeypatch):
    """200 changes in a burst earn a payload or two, never closer than MIN_INTERVAL, the last one current."""
    from annotation.http import consumers

    sent_at = []
    real = consumers.campaign_dashboard

    def timed(**kwargs):
        sent_at.append(time.monotonic())
        return real(**kwargs)

    monkeypatch.setattr(consumers, "campaign_dashboard", timed)
    comm = dashboard_socket(manager, campaign.pk)
    group = events.campaign_group(campaign.pk)

    async def run():
        assert (await comm.connect())[0]
        await payload(comm)
        for _ in range(100):
            await in_memory_layer.group_send(group, {"type": "campaign.changed"})
        # A real judgment in the middle of the burst: the last payload must show it.
        assignment = await database_sync_to_async(lease)(campaign, annotator2)
        await database_sync_to_async(submit)(assignment, annotator2)
        for _ in range(100):
            await in_memory_layer.group_send(group, {"type": "campaign.changed"})
        last = await payload(comm, timeout=3)
        while not await comm.receive_nothing(timeout=CampaignDashboardConsumer.MIN_INTERVAL * 2):
            last = await payload(comm, timeout=3)
        assert last["progress"]["judgments"] == 1
        await comm.disconnect()

    run_async(run)
    assert 2 <= len(sent_at) <= 4  # the snapshot on connect, then one or two for the burst
    gaps = [b - a for a, b in zip(sent_at, sent_at[1:], strict=False)]
    assert all(g >= CampaignDashboardConsumer.MIN_INTERVAL * 0.9 for g in gaps), gaps


@live
def test_progress_socket_still_serves_researchers(in_memory_layer, campaign, researcher):
    """The dashboard's group is the progress page's: both kinds of socket live side by side."""
    from tests.websockets import communicator, snapshot

    comm = communicator(researcher, campaign.pk)

    async def run():
        assert (await comm.connect())[0]
        assert (await snapshot(comm))["wanted"] == 10
        await comm.disconnect()

    run_async(run)


@live
def test_two_managers_share_one_computation(in_memory_layer, campaign, manager, make_user, annotator,
                                            monkeypatch):
    """Two dashboards of one campaign: a judgment is aggregated once, and both get it."""
    second = make_user("second-manager", Role.MANAGER)
    membership_add(campaign=campaign, user=second, role=Role.MANAGER)
    calls = []
    real = dashboard_module.campaign_quality

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(dashboard_module, "campaign_quality", counting)
    a, b = dashboard_socket(manager, campaign.pk), dashboard_socket(second, campaign.pk)

    async def run():
        assert (await a.connect())[0] and (await b.connect())[0]
        await payload(a), await payload(b)
        assert len(calls) == 1
        assignment = await database_sync_to_async(lease)(campaign, annotator)
        await payload(a, timeout=2), await payload(b, timeout=2)
        assert len(calls) == 1  # a lease changes no judgment
        await database_sync_to_async(submit)(assignment, annotator)
        done = await asyncio.gather(payload(a, timeout=2), payload(b, timeout=2))
        assert [d["progress"]["judgments"] for d in done] == [1, 1]
        assert len(calls) == 2
        await a.disconnect()
        await b.disconnect()

    run_async(run)


@live
def test_stale_figures_are_followed_by_current_ones_without_another_change(
    in_memory_layer, campaign, manager, annotator, monkeypatch
):
    """On a slow (large) campaign the socket sends the recomputed figures when they are due."""
    calls = []
    _slowed(monkeypatch, calls)
    comm = dashboard_socket(manager, campaign.pk)

    async def run():
        assert (await comm.connect())[0]
        assert (await payload(comm))["quality_as_of"]["stale"] is False
        assignment = await database_sync_to_async(lease)(campaign, annotator)
        await payload(comm)  # the lease: no judgment changed, nothing stale
        await database_sync_to_async(submit)(assignment, annotator)
        d = await payload(comm)
        assert d["progress"]["judgments"] == 1  # the live part at once
        while d["quality_as_of"]["stale"]:  # then, with nothing else happening, the figures
            d = await payload(comm, timeout=5)
        assert d["quality_as_of"]["judgment_count"] == 1
        assert len(d["leaderboard"]["rows"]) == 2
        await comm.disconnect()

    run_async(run)


def test_dashboard_consensus_counts_what_a_default_dataset_would_export(make_campaign, manager, annotator, annotator2):
    """The dashboard decides by the dataset form's defaults: a 1–1 split is undecided or a tie, never decided."""
    from annotation.core.snapshot import DEFAULT_METHOD
    from annotation.dashboard import campaign_quality
    from tests.annotation.support import judge_all, prefer

    campaign = make_campaign(items=4, overlap=2, annotators=[annotator, annotator2])
    ids = sorted(campaign.items.values_list("pk", flat=True))
    judge_all(campaign, annotator, prefer("model-x"))
    judge_all(campaign, annotator2, lambda i, m: prefer("model-y" if i == ids[0] else "model-x")(i, m))
    c = campaign_quality(campaign=campaign, excluded=set())["consensus"]
    assert (c["method"], c["min_judgments"], c["min_confidence"], c["pairs"], c["decided"]) == (
        DEFAULT_METHOD, 2, 0.6, 4, 3)
    assert c["ties"] + c["undecided"]["too_few_judgments"] + c["undecided"]["below_confidence"] == 1
