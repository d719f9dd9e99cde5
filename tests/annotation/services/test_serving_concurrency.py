"""Many annotators racing next / submit / skip / expiry end with exactly the judgments wanted.

Runs on whichever database the suite runs on (SQLite and PostgreSQL in `make test`).
"""

import random
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Assignment, Item, Judgment, Membership
from annotation.selectors import campaign_live_counts, judging_progress
from annotation.services.serving import leases_expire

ITEMS, OVERLAP, CLIENTS = 500, 3, 32


def _client_loop(user, campaign_id: int, seed: int, created: list, conflicts: list, errors: list, stop) -> None:
    rng = random.Random(seed)
    client = APIClient()
    client.force_authenticate(user)
    idle = 0
    try:
        while not stop.is_set():
            # As at the end of a real request: give the connection back (to the pool on PostgreSQL).
            connection.close()
            res = client.post(reverse("api:assignment_next", kwargs={"campaign_id": campaign_id}), {}, format="json")
            if res.status_code != 200:
                errors.append(("next", res.status_code, res.content[:200]))
                return
            data = res.json()
            a = data["assignment"]
            if a is None:
                if data["progress"]["done"] >= ITEMS * OVERLAP:
                    return
                idle += 1
                if idle > 400:  # nothing left that this annotator may take
                    return
                stop.wait(0.01)
                continue
            idle = 0
            roll = rng.random()
            aid = a["id"]
            if roll < 0.06:
                res = client.post(reverse("api:assignment_skip", kwargs={"assignment_id": aid}),
                                  {"reason": "cant_judge"}, format="json")
                if res.status_code != 200:
                    errors.append(("skip", res.status_code, res.content[:200]))
                continue
            if roll < 0.12:
                # Walk away: the lease lapses, and the annotator submits late.
                now = timezone.now()
                Assignment.objects.filter(pk=aid).update(leased_at=now - timedelta(hours=1), expires_at=now)
                leases_expire(campaign_id=campaign_id)
            answer = {"outcome": "preferred", "preferred_response_id": a["item"]["responses"][rng.randrange(2)]["id"],
                      "strength": rng.randint(1, 3), "time_taken_ms": rng.randint(500, 9000)}
            for _ in range(2 if roll > 0.95 else 1):  # sometimes the same submit twice
                res = client.post(reverse("api:judgment_submit", kwargs={"assignment_id": aid}), answer, format="json")
                if res.status_code == 201:
                    created.append(res.json()["id"])
                elif res.status_code == 409:
                    conflicts.append(aid)
                elif res.status_code != 200:
                    errors.append(("submit", res.status_code, res.content[:200]))
    except Exception as exc:  # reported by the test, which fails on any error
        errors.append(("exception", repr(exc), b""))
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_32_clients_racing_end_with_exact_overlap(make_campaign, make_user):
    users = [make_user(f"racer{i}", "annotator") for i in range(CLIENTS)]
    campaign = make_campaign(items=ITEMS, overlap=OVERLAP, annotators=users)
    created: list[int] = []
    conflicts: list[int] = []
    errors: list = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_client_loop, args=(u, campaign.pk, i, created, conflicts, errors, stop))
        for i, u in enumerate(users)
    ]
    sweeper_stop = threading.Event()

    def sweep() -> None:
        while not sweeper_stop.wait(0.05):
            leases_expire(campaign_id=campaign.pk)
        connection.close()

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    stop.set()
    sweeper_stop.set()
    sweeper.join()

    assert not errors, errors[:5]
    assert not any(t.is_alive() for t in threads)
    judgments = Judgment.objects.filter(campaign=campaign)
    assert judgments.count() == ITEMS * OVERLAP
    # no lost submit: every 201 the clients saw is stored, and nothing else is
    assert sorted(created) == sorted(judgments.values_list("pk", flat=True))
    # never two from one annotator on an item
    assert not judgments.values("item", "annotator").annotate(n=Count("id")).filter(n__gt=1).exists()
    # no item over target, and the counters agree with the rows
    per_item = Counter(judgments.values_list("item_id", flat=True))
    for item in Item.objects.filter(campaign=campaign):
        assert item.judgment_count == per_item[item.pk] == OVERLAP
        assert item.lease_count == 0
    assert not Assignment.objects.filter(campaign=campaign, status=Assignment.Status.LEASED).exists()
    # the progress counters kept beside the rows agree with them
    campaign.refresh_from_db()
    assert judging_progress(campaign_id=campaign.pk, user=users[0])["done"] == ITEMS * OVERLAP == campaign.wanted_judgments
    assert sum(Membership.objects.filter(campaign=campaign).values_list("judged", flat=True)) == ITEMS * OVERLAP
    live = campaign_live_counts(campaign_id=campaign.pk)
    assert (live["items"], live["complete"], live["done"], live["leased"], live["remaining"]) == (
        ITEMS, ITEMS, ITEMS * OVERLAP, 0, 0)
