"""The manager's console, people: members (add, cap, pause, exclude, remove) and invite links."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.errors import ApplicationError, ConflictError, ForbiddenError, NotFoundError
from annotation.models import (
    Assignment,
    AuditEntry,
    DatasetComparison,
    Invite,
    Item,
    Membership,
    Role,
)
from annotation.selectors import dataset_judgments
from annotation.services.datasets import dataset_build, dataset_create
from annotation.services.people import (
    InviteRefused,
    invite_accept,
    invite_create,
    invite_revoke,
    invite_state,
    membership_add_by_username,
    membership_get,
    membership_remove,
    membership_set_active,
    membership_set_cap,
    membership_set_excluded,
)
from annotation.services.serving import assignment_lease_next, judgment_submit

pytestmark = pytest.mark.django_db


def member(campaign, user) -> Membership:
    return membership_get(campaign=campaign, user_id=user.pk)


def prefer(campaign, annotator, model: str) -> int:
    """Judge every item served to `annotator`, always preferring `model`'s response."""
    n = 0
    while a := assignment_lease_next(campaign_id=campaign.pk, annotator=annotator):
        by_model = {link.response.model_name: link.response_id
                    for link in a.item.item_responses.select_related("response")}
        judgment_submit(assignment_id=a.pk, annotator=annotator,
                        answer={"outcome": "preferred", "preferred_response_id": by_model[model], "strength": 2})
        n += 1
    return n


def build(campaign, manager):
    dataset = dataset_create(campaign=campaign, method="majority", params={"bootstrap_rounds": 10},
                             created_by=manager)
    return dataset_build(dataset_id=dataset.pk)


# --- members -----------------------------------------------------------------------------------------


def test_add_by_username_and_its_errors(make_campaign, manager, annotator, researcher, make_user):
    campaign = make_campaign(items=1)
    m = membership_add_by_username(campaign=campaign, actor=manager, username=" ann ", cap=5)
    assert (m.role, m.cap) == ("annotator", 5)
    with pytest.raises(ApplicationError, match="^username: no active user called 'nobody'$"):
        membership_add_by_username(campaign=campaign, actor=manager, username="nobody")
    with pytest.raises(ApplicationError, match="^username: is required$"):
        membership_add_by_username(campaign=campaign, actor=manager, username="  ")
    with pytest.raises(ApplicationError, match="^role: res is a researcher and cannot be a annotator here$"):
        membership_add_by_username(campaign=campaign, actor=manager, username="res")
    with pytest.raises(ApplicationError, match="^cap: must be a whole number of judgments, 1 or more"):
        membership_add_by_username(campaign=campaign, actor=manager, username="ann", cap=0)
    entry = AuditEntry.objects.get(campaign=campaign, action="membership.add")
    assert (entry.actor, entry.target, entry.after) == (manager, "user:ann", {"role": "annotator", "cap": 5})


def test_pause_releases_open_leases_and_stops_serving(make_campaign, manager, annotator):
    campaign = make_campaign(items=2, annotators=[annotator])
    lease = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    membership_set_active(membership=member(campaign, annotator), actor=manager, active=False)
    lease.refresh_from_db()
    assert lease.status == Assignment.Status.EXPIRED
    assert Item.objects.get(pk=lease.item_id).lease_count == 0
    with pytest.raises(ForbiddenError, match="Your work in this campaign is paused by its manager."):
        assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    membership_set_active(membership=member(campaign, annotator), actor=manager, active=True)
    assert assignment_lease_next(campaign_id=campaign.pk, annotator=annotator) is not None
    entries = AuditEntry.objects.filter(campaign=campaign, target="user:ann").exclude(action="membership.add").order_by("pk")
    assert [(e.action, e.after) for e in entries] == [
        ("membership.pause", {"is_active": False, "leases_released": 1}),
        ("membership.resume", {"is_active": True}),
    ]


def test_cap_limits_what_is_served(make_campaign, manager, annotator):
    campaign = make_campaign(items=3, annotators=[annotator])
    membership_set_cap(membership=member(campaign, annotator), actor=manager, cap=1)
    assert prefer(campaign, annotator, "model-x") == 1
    membership_set_cap(membership=member(campaign, annotator), actor=manager, cap=None)
    assert prefer(campaign, annotator, "model-x") == 2
    with pytest.raises(ApplicationError, match="^cap: must be a whole number"):
        membership_set_cap(membership=member(campaign, annotator), actor=manager, cap=-3)
    caps = [(e.before, e.after) for e in AuditEntry.objects.filter(action="membership.cap").order_by("pk")]
    assert caps == [({"cap": None}, {"cap": 1, "judged": 0}), ({"cap": 1}, {"cap": None, "judged": 1})]


def test_exclusion_changes_the_dataset_consensus_and_is_reversible(make_campaign, manager, annotator, annotator2,
                                                                   make_user):
    """Two annotators prefer model-y, one prefers model-x: excluding the two flips every item's consensus;
    including them again gives the first consensus back."""
    a3 = make_user("ann3", Role.ANNOTATOR)
    campaign = make_campaign(items=3, overlap=3, annotators=[annotator, annotator2, a3])
    prefer(campaign, annotator, "model-y")
    prefer(campaign, annotator2, "model-y")
    prefer(campaign, a3, "model-x")

    def chosen(dataset) -> set[str]:
        return set(DatasetComparison.objects.filter(dataset=dataset).values_list("chosen_model", flat=True))

    before = build(campaign, manager)
    assert chosen(before) == {"model-y"} and before.judgment_count == 9
    for user in (annotator, annotator2):
        membership_set_excluded(membership=member(campaign, user), actor=manager, excluded=True)
    excluded = build(campaign, manager)
    assert chosen(excluded) == {"model-x"}
    assert excluded.judgment_count == 3 and excluded.annotator_count == 1
    assert len(excluded.params["excluded_annotators"]) == 2
    assert excluded.stats["excluded"]["judgments"] == 6
    assert dataset_judgments(dataset=excluded).count() == 3
    for user in (annotator, annotator2):
        membership_set_excluded(membership=member(campaign, user), actor=manager, excluded=False)
    again = build(campaign, manager)
    assert chosen(again) == {"model-y"} and again.content_hash == before.content_hash
    assert again.params["excluded_annotators"] == []
    # A dataset keeps what it was built from, whatever happens to the memberships later.
    assert dataset_judgments(dataset=excluded).count() == 3


def test_excluding_everyone_says_why_the_dataset_is_empty(make_campaign, manager, annotator):
    campaign = make_campaign(items=2, annotators=[annotator])
    prefer(campaign, annotator, "model-x")
    membership_set_excluded(membership=member(campaign, annotator), actor=manager, excluded=True)
    dataset = build(campaign, manager)
    assert dataset.status == "failed"
    assert dataset.error == (
        "There is nothing to aggregate yet: the campaign has no current judgments on regular items that compare "
        "two responses (2 judgment(s) of excluded annotators were left out). Collect judgments, then create the "
        "dataset again."
    )


def test_remove_keeps_judgments_and_refuses_the_last_manager_and_excluded_members(
    make_campaign, manager, annotator, annotator2
):
    campaign = make_campaign(items=2, overlap=2, annotators=[annotator, annotator2])
    prefer(campaign, annotator, "model-x")
    lease = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator2)
    membership_remove(membership=member(campaign, annotator2), actor=manager)
    assert not Membership.objects.filter(campaign=campaign, user=annotator2).exists()
    assert Assignment.objects.get(pk=lease.pk).status == Assignment.Status.EXPIRED
    with pytest.raises(ConflictError, match="^manager is the campaign's only manager; add another manager"):
        membership_remove(membership=member(campaign, manager), actor=manager)
    membership_set_excluded(membership=member(campaign, annotator), actor=manager, excluded=True)
    with pytest.raises(ConflictError) as exc:
        membership_remove(membership=member(campaign, annotator), actor=manager)
    assert exc.value.message == (
        "ann's judgments are excluded from aggregation; removing ann would count them again. "
        "Pause ann instead, or include the judgments first."
    )
    with pytest.raises(NotFoundError, match="This person is not a member of the campaign."):
        membership_get(campaign=campaign, user_id=annotator2.pk)
    removed = AuditEntry.objects.get(action="membership.remove")
    assert removed.before == {"role": "annotator", "cap": None, "is_active": True, "judged": 0}


def test_people_page_actions(client, make_campaign, manager, annotator):
    campaign = make_campaign(items=1, annotators=[annotator])
    client.force_login(manager)
    url = reverse("campaign_member_update", args=[campaign.pk, annotator.pk])
    for action, check in [("pause", lambda m: not m.is_active), ("resume", lambda m: m.is_active),
                          ("exclude", lambda m: m.excluded), ("include", lambda m: not m.excluded)]:
        response = client.post(url, {"action": action})
        assert response.status_code == 302 and check(member(campaign, annotator)), action
    client.post(url, {"action": "cap", "cap": "12"})
    assert member(campaign, annotator).cap == 12
    page = client.get(reverse("campaign_people", args=[campaign.pk]), follow=True)
    assert b"ann has no cap" not in page.content and b'data-testid="member-ann"' in page.content
    response = client.post(url, {"action": "cap", "cap": "-1"}, follow=True)
    assert "Cap for ann: Ensure this value is greater than or equal to 1." in response.content.decode()
    response = client.post(url, {"action": "explode"}, follow=True)
    assert "action: must be one of pause, resume, exclude, include, cap, remove" in response.content.decode()
    response = client.post(reverse("campaign_member_add", args=[campaign.pk]), {"username": "ghost", "role": "annotator"})
    assert response.status_code == 400
    assert response.context["add_form"].errors["username"] == ["no active user called 'ghost'"]
    client.post(url, {"action": "remove"})
    assert not Membership.objects.filter(campaign=campaign, user=annotator).exists()


# --- invites -----------------------------------------------------------------------------------------


def invite(campaign, manager, **kwargs) -> Invite:
    kwargs.setdefault("expires_at", timezone.now() + timedelta(days=1))
    return invite_create(campaign=campaign, actor=manager, **kwargs)


def test_invite_joins_once_per_user_and_counts_uses(make_campaign, manager, outsider, annotator):
    campaign = make_campaign(items=1)
    link = invite(campaign, manager, cap=10, max_uses=2)
    membership, joined = invite_accept(token=link.token, user=outsider)
    assert joined and (membership.role, membership.cap) == ("annotator", 10)
    assert invite_accept(token=link.token, user=outsider) == (membership, False)  # uses nothing up
    link.refresh_from_db()
    assert link.uses == 1 and invite_state(link) == "active"
    invite_accept(token=link.token, user=annotator)
    link.refresh_from_db()
    assert invite_state(link) == "used up"
    entry = AuditEntry.objects.filter(action="invite.accept").order_by("pk").first()
    assert (entry.actor, entry.after["user"], entry.after["uses"]) == (outsider, "outsider", 1)


def test_invite_refusals_are_clear(make_campaign, manager, outsider, annotator, researcher):
    campaign = make_campaign(items=1)
    expired = invite(campaign, manager)
    Invite.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    with pytest.raises(InviteRefused, match="^This invite link expired on .*Ask the campaign's manager for a new one.$"):
        invite_accept(token=expired.token, user=outsider)
    revoked = invite_revoke(invite=invite(campaign, manager), actor=manager)
    with pytest.raises(InviteRefused, match="^This invite link was revoked by the campaign's manager."):
        invite_accept(token=revoked.token, user=outsider)
    used = invite(campaign, manager, max_uses=1)
    invite_accept(token=used.token, user=annotator)
    with pytest.raises(InviteRefused, match=r"^This invite link has been used 1 time\(s\), as many as it allows."):
        invite_accept(token=used.token, user=outsider)
    with pytest.raises(NotFoundError, match="^This invite link is not valid."):
        invite_accept(token="made-up", user=outsider)
    with pytest.raises(ForbiddenError) as exc:
        invite_accept(token=invite(campaign, manager).token, user=researcher)
    assert exc.value.message == (
        "This link invites annotators, and your account (researcher) cannot be one. "
        "Ask the campaign's manager or an administrator."
    )
    assert not Membership.objects.filter(campaign=campaign, user=outsider).exists()


def test_invite_create_errors(make_campaign, manager):
    campaign = make_campaign(items=1)
    now = timezone.now()
    with pytest.raises(ApplicationError, match="^expires_at: must be in the future$"):
        invite(campaign, manager, expires_at=now - timedelta(seconds=1))
    with pytest.raises(ApplicationError, match="^expires_at: can be at most 90 days ahead$"):
        invite(campaign, manager, expires_at=now + timedelta(days=91))
    with pytest.raises(ApplicationError, match="^max_uses: must be 1 or more, or empty for no limit$"):
        invite(campaign, manager, max_uses=0)
    assert not Invite.objects.exists()


def test_invite_page_joins_or_refuses_with_a_clear_page(client, make_campaign, manager, outsider):
    campaign = make_campaign(items=1)
    link = invite(campaign, manager)
    client.force_login(outsider)
    response = client.get(reverse("invite_accept", args=[link.token]))
    assert response.status_code == 302 and response["Location"] == reverse("campaign_judge", args=[campaign.pk])
    Invite.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    Membership.objects.filter(user=outsider).delete()
    response = client.get(reverse("invite_accept", args=[link.token]))
    assert response.status_code == 410
    assert b"This invite link cannot be used" in response.content and b"expired on" in response.content
    assert client.get(reverse("invite_accept", args=["nope"])).status_code == 404
    client.logout()
    response = client.get(reverse("invite_accept", args=[link.token]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_invite_pages_create_and_revoke(client, make_campaign, manager):
    campaign = make_campaign(items=1)
    client.force_login(manager)
    response = client.post(reverse("campaign_invite_create", args=[campaign.pk]),
                           {"role": "annotator", "expires_in": "24", "max_uses": "3"})
    assert response.status_code == 302
    link = Invite.objects.get(campaign=campaign)
    assert link.max_uses == 3 and timedelta(hours=23) < link.expires_at - timezone.now() <= timedelta(hours=24)
    page = client.get(reverse("campaign_people", args=[campaign.pk])).content.decode()
    assert f"/invite/{link.token}/" in page
    client.post(reverse("campaign_invite_revoke", args=[campaign.pk, link.pk]))
    link.refresh_from_db()
    assert invite_state(link) == "revoked"
    assert [e.action for e in AuditEntry.objects.filter(target=f"invite:{link.pk}").order_by("pk")] == [
        "invite.create", "invite.revoke"]


# --- the API ---------------------------------------------------------------------------------------


def test_api_members_and_invites(client_for, make_campaign, manager, annotator, outsider):
    campaign = make_campaign(items=1, annotators=[annotator])
    api = client_for(manager)
    rows = api.get(reverse("api:campaign_member_list", args=[campaign.pk])).json()
    assert {r["username"] for r in rows} == {"manager", "ann"}
    url = reverse("api:campaign_member_update", args=[campaign.pk, annotator.pk])
    res = api.post(url, {"is_active": False, "excluded": True, "cap": 4}, format="json")
    assert res.status_code == 200, res.content
    assert (res.json()["is_active"], res.json()["excluded"], res.json()["cap"]) == (False, True, 4)
    res = api.post(url, {"cap": None}, format="json")
    assert res.json()["cap"] is None
    res = api.post(reverse("api:campaign_member_remove", args=[campaign.pk, annotator.pk]), format="json")
    assert res.status_code == 409 and res.json()["message"].startswith("ann's judgments are excluded")
    res = api.post(reverse("api:campaign_member_update", args=[campaign.pk, outsider.pk]), {}, format="json")
    assert res.status_code == 404 and res.json()["message"] == "This person is not a member of the campaign."

    res = api.post(reverse("api:campaign_invite_create", args=[campaign.pk]), {"expires_in_hours": 2}, format="json")
    assert res.status_code == 201 and res.json()["state"] == "active"
    token = res.json()["url"].rstrip("/").rsplit("/", 1)[1]
    joined = client_for(outsider).post(reverse("api:invite_accept", args=[token]), format="json")
    assert joined.status_code == 200 and joined.json() == {"campaign_id": campaign.pk, "role": "annotator",
                                                            "joined": True}
    invite_id = res.json()["id"]
    res = api.post(reverse("api:campaign_invite_revoke", args=[campaign.pk, invite_id]), format="json")
    assert res.json()["state"] == "revoked"
    listed = api.get(reverse("api:campaign_invite_list", args=[campaign.pk])).json()
    assert [(i["id"], i["uses"], i["state"]) for i in listed] == [(invite_id, 1, "revoked")]
    res = client_for(annotator).post(reverse("api:invite_accept", args=[token]), format="json")
    assert res.status_code == 200 and res.json()["joined"] is False  # already a member
