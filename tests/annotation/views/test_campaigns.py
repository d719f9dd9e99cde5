"""The manager's console, campaigns: the wizard, settings, the schema lock, new versions, the
lifecycle and closing into a dataset — through the services, the pages and the API."""

import pytest
from django.urls import reverse

from annotation.errors import ApplicationError, ConflictError, ForbiddenError
from annotation.models import (
    AuditEntry,
    Campaign,
    CampaignCounter,
    Dataset,
    Item,
    Judgment,
    Membership,
    Prompt,
    Role,
)
from annotation.selectors import campaign_live_counts
from annotation.services.campaigns import (
    campaign_close_into_dataset,
    campaign_create,
    campaign_new_version,
    campaign_set_status,
    campaign_update,
    membership_add,
)
from annotation.services.datasets import dataset_build
from annotation.services.imports import items_import
from annotation.services.serving import assignment_lease_next, judgment_submit
from tests.conftest import jsonl, pair_rows

pytestmark = pytest.mark.django_db

HELPFUL = [{"name": "helpfulness", "label": "Helpfulness", "scale": {"min": 1, "max": 5}}]


def judge(campaign, annotator, n=None) -> int:
    """Judge up to `n` items (all when None): always the response shown first, clearly better."""
    done = 0
    while (n is None or done < n) and (a := assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)):
        judgment_submit(assignment_id=a.pk, annotator=annotator,
                        answer={"outcome": "preferred", "preferred_response_id": a.display_order[0], "strength": 2})
        done += 1
    return done


def actions(campaign) -> list[str]:
    return list(AuditEntry.objects.filter(campaign=campaign).order_by("pk").values_list("action", flat=True))


# --- the wizard page -------------------------------------------------------------------------------

WIZARD = {
    "name": "Helpfulness round", "kind": "rating", "allow_ties": "on", "overlap": "2", "lease_seconds": "300",
    "gold_percent": "10", "instructions": "Rate **each** reply.",
    "criteria-TOTAL_FORMS": "2", "criteria-INITIAL_FORMS": "0", "criteria-MIN_NUM_FORMS": "0",
    "criteria-MAX_NUM_FORMS": "1000",
    "criteria-0-name": "helpfulness", "criteria-0-label": "Helpfulness", "criteria-0-scale_min": "1",
    "criteria-0-scale_max": "5", "criteria-0-low_label": "Useless", "criteria-0-high_label": "Perfect",
    "criteria-1-name": "tone", "criteria-1-scale_min": "0", "criteria-1-scale_max": "1", "criteria-1-DELETE": "on",
}


def test_wizard_creates_the_campaign_with_its_criteria_and_options(client, manager):
    """Every step of the wizard lands in the campaign; a row marked for removal is left out."""
    client.force_login(manager)
    response = client.post(reverse("campaign_new"), WIZARD)
    campaign = Campaign.objects.get(name="Helpfulness round")
    assert response.status_code == 302 and response["Location"] == reverse("campaign_import", args=[campaign.pk])
    assert campaign.kind == "rating" and campaign.overlap == 2 and campaign.lease_seconds == 300
    assert campaign.gold_rate == 0.1 and campaign.allow_ties and not campaign.use_strength
    assert campaign.criteria == [{"name": "helpfulness", "label": "Helpfulness", "description": "",
                                  "scale": {"min": 1, "max": 5, "labels": {"1": "Useless", "5": "Perfect"}}}]
    assert campaign.status == Campaign.Status.DRAFT
    assert actions(campaign) == ["campaign.create"]


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"name": ""}, "name", "This field is required."),
    ({"overlap": "0"}, "overlap", "Ensure this value is greater than or equal to 1."),
    ({"lease_seconds": "5"}, "lease_seconds", "Ensure this value is greater than or equal to 30."),
    ({"gold_percent": "150"}, "gold_percent", "Ensure this value is less than or equal to 100."),
])
def test_wizard_names_the_field_at_fault_and_creates_nothing(client, manager, change, field, message):
    client.force_login(manager)
    response = client.post(reverse("campaign_new"), {**WIZARD, **change})
    assert response.status_code == 200
    assert response.context["form"].errors[field] == [message]
    assert not Campaign.objects.exists()


def test_wizard_shows_a_criterion_error_on_its_row(client, manager):
    client.force_login(manager)
    bad_row = {"criteria-0-scale_min": "5", "criteria-0-scale_max": "1"}
    response = client.post(reverse("campaign_new"), {**WIZARD, **bad_row})
    assert response.context["criteria"].forms[0].errors["scale_max"] == ["Must be larger than “Scale from”."]
    no_rows = {"criteria-0-DELETE": "on"}
    response = client.post(reverse("campaign_new"), {**WIZARD, **no_rows})
    assert response.context["form"].non_field_errors() == [
        "criteria: a rating campaign needs at least one criterion to rate on"
    ]
    assert not Campaign.objects.exists()


def test_wizard_page_is_for_global_managers(client, annotator, manager):
    client.force_login(annotator)
    assert client.get(reverse("campaign_new")).status_code == 403
    client.force_login(manager)
    page = client.get(reverse("campaign_new")).content.decode()
    assert 'id="instructions-preview"' in page and 'formtarget="judge-preview"' in page


# --- settings and the schema lock --------------------------------------------------------------------


def test_settings_edit_is_audited_with_only_what_changed(make_campaign, manager):
    campaign = make_campaign(items=2)
    campaign_update(campaign=campaign, actor=manager, name="Renamed", instructions="New text", gold_rate=0.2,
                    lease_seconds=600)
    entry = AuditEntry.objects.filter(campaign=campaign, action="campaign.settings").get()
    assert entry.actor == manager and entry.target == f"campaign:{campaign.pk}"
    assert entry.before == {"name": "Test campaign", "instructions": "", "gold_rate": 0.0}
    assert entry.after == {"name": "Renamed", "instructions": "New text", "gold_rate": 0.2}
    campaign_update(campaign=campaign, actor=manager, name="Renamed")  # no change, no entry
    assert AuditEntry.objects.filter(campaign=campaign, action="campaign.settings").count() == 1


def test_schema_edits_are_refused_once_judgments_exist(make_campaign, manager, annotator):
    campaign = make_campaign(items=3, annotators=[annotator])
    campaign_update(campaign=campaign, actor=manager, allow_ties=False)  # nothing judged yet: allowed
    judge(campaign, annotator, n=1)
    with pytest.raises(ConflictError) as exc:
        campaign_update(campaign=campaign, actor=manager, criteria=HELPFUL, use_strength=False)
    assert exc.value.message == (
        "criteria, use_strength: cannot change once judgments exist (1 so far); create a new version of the "
        "campaign to change the schema."
    )
    assert set(exc.value.extra["fields"]) == {"criteria", "use_strength"}
    campaign.refresh_from_db()
    assert campaign.criteria == [] and campaign.use_strength
    campaign_update(campaign=campaign, actor=manager, instructions="Still editable")  # settings still are


def test_kind_change_must_fit_the_items(manager):
    campaign = campaign_create(created_by=manager, name="Three replies", kind="ranking")
    rows = [{**r, "responses": [*r["responses"], {"content": "A third answer"}]} for r in pair_rows(2)]
    items_import(campaign=campaign, lines=jsonl(rows))
    with pytest.raises(ApplicationError) as exc:
        campaign_update(campaign=campaign, actor=manager, kind="pairwise")
    assert exc.value.message == "kind: 2 item(s) have 3 responses; a pairwise campaign needs 2"
    campaign_update(campaign=campaign, actor=manager, kind="rating", criteria=HELPFUL)
    assert Campaign.objects.get(pk=campaign.pk).kind == "rating"


def test_overlap_up_raises_every_target_and_reopens_complete_items(make_campaign, manager, annotator):
    campaign = make_campaign(items=3, overlap=1, annotators=[annotator])
    judge(campaign, annotator, n=2)
    assert campaign_live_counts(campaign_id=campaign.pk)["complete"] == 2
    campaign_update(campaign=campaign, actor=manager, overlap=3)
    assert set(Item.objects.filter(campaign=campaign).values_list("target", flat=True)) == {3}
    counts = campaign_live_counts(campaign_id=campaign.pk)
    assert (counts["complete"], counts["wanted"], counts["done"], counts["remaining"]) == (0, 9, 2, 7)


def test_overlap_down_is_refused_below_what_items_already_have(make_campaign, manager, annotator, annotator2):
    campaign = make_campaign(items=2, overlap=3, annotators=[annotator, annotator2])
    judge(campaign, annotator)
    judge(campaign, annotator2, n=1)
    with pytest.raises(ApplicationError) as exc:
        campaign_update(campaign=campaign, actor=manager, overlap=1)
    assert exc.value.message == (
        "overlap: cannot go down to 1: an item already has 2 judgments or open leases (the lowest possible now is 2)"
    )
    campaign_update(campaign=campaign, actor=manager, overlap=2)
    assert sum(CampaignCounter.objects.filter(campaign=campaign).values_list("items_complete", flat=True)) == 1


def test_only_the_campaigns_managers_edit_it(make_campaign, make_user):
    campaign = make_campaign(items=1)
    other = make_user("other_manager", Role.MANAGER)
    with pytest.raises(ForbiddenError, match="Only the campaign's managers can do this."):
        campaign_update(campaign=campaign, actor=other, name="Mine now")


def test_closed_campaigns_keep_their_settings(make_campaign, manager):
    campaign = make_campaign(items=1)
    campaign_set_status(campaign=campaign, status="closed", actor=manager)
    with pytest.raises(ConflictError, match="This campaign is closed; its settings no longer change."):
        campaign_update(campaign=campaign, actor=manager, name="x")


def test_settings_page_locks_the_schema_fields_once_judged(client, make_campaign, manager, annotator):
    campaign = make_campaign(items=2, annotators=[annotator])
    judge(campaign, annotator, n=1)
    client.force_login(manager)
    url = reverse("campaign_settings", args=[campaign.pk])
    page = client.get(url)
    assert page.context["form"].fields["kind"].disabled and b"start a new version" in page.content
    data = {"name": "Renamed", "kind": "ranking", "overlap": "2", "lease_seconds": "900", "gold_percent": "0",
            "instructions": "", "allow_ties": "on", "use_strength": "on"}
    response = client.post(url, data)
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.name, campaign.overlap, campaign.lease_seconds, campaign.kind) == ("Renamed", 2, 900, "pairwise")


# --- new versions ----------------------------------------------------------------------------------


def test_new_version_copies_settings_members_and_unjudged_items_and_closes_the_old(
    make_campaign, manager, annotator, annotator2
):
    campaign = make_campaign(items=4, overlap=2, annotators=[annotator, annotator2], instructions="Be fair.")
    Membership.objects.filter(campaign=campaign, user=annotator2).update(cap=7, excluded=True, is_active=False)
    judge(campaign, annotator, n=2)
    new = campaign_new_version(campaign=campaign, actor=manager, criteria=HELPFUL, use_strength=False)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CLOSED
    assert (new.parent_id, new.version, new.round_number) == (campaign.pk, 2, 1)
    assert new.status == Campaign.Status.ACTIVE and new.instructions == "Be fair." and new.overlap == 2
    assert new.criteria[0]["name"] == "helpfulness" and not new.use_strength
    members = {m.user.username: (m.role, m.cap, m.is_active, m.excluded)
               for m in Membership.objects.filter(campaign=new).select_related("user")}
    assert members == {"manager": ("manager", None, True, False), "ann": ("annotator", None, True, False),
                       "ann2": ("annotator", 7, False, True)}
    # The two judged items stay (with their judgments) in version 1; the two unjudged ones come along.
    assert new.item_count == 2 and new.wanted_judgments == 4
    judged_ids = set(Judgment.objects.filter(campaign=campaign).values_list("item__prompt__external_id", flat=True))
    copied_ids = set(Prompt.objects.filter(campaign=new).values_list("external_id", flat=True))
    assert copied_ids == {"p0", "p1", "p2", "p3"} - judged_ids
    assert not Judgment.objects.filter(campaign=new).exists()
    assert set(Item.objects.filter(campaign=new).values_list("target", flat=True)) == {2}
    assert actions(campaign)[-2:] == ["campaign.new_version", "campaign.status"]
    entry = AuditEntry.objects.get(campaign=new, action="campaign.new_version")
    assert entry.before["version"] == 1 and entry.after["version"] == 2 and entry.after["items_copied"] == 2
    assert entry.before["use_strength"] is True and entry.after["use_strength"] is False


@pytest.mark.parametrize(("mode", "items"), [("all", 3), ("incomplete", 2), ("none", 0)])
def test_new_version_item_modes(make_campaign, manager, annotator, mode, items):
    campaign = make_campaign(items=3, overlap=1, annotators=[annotator])
    judge(campaign, annotator, n=1)
    new = campaign_new_version(campaign=campaign, actor=manager, copy_items=mode)
    assert Item.objects.filter(campaign=new).count() == items == new.item_count
    assert new.status == (Campaign.Status.ACTIVE if items else Campaign.Status.DRAFT)


def test_new_version_carries_gold_checks_with_their_answers(make_campaign, manager):
    campaign = make_campaign(items=1, active=False)
    items_import(campaign=campaign, lines=jsonl([{**pair_rows(1, prefix="g")[0], "gold": {"preferred": 1}}]))
    new = campaign_new_version(campaign=campaign, actor=manager)
    gold = Item.objects.get(campaign=new, is_gold=True)
    second = gold.item_responses.get(position=1).response
    assert gold.gold == {"outcome": "preferred", "preferred_response_id": second.pk}
    assert second.prompt.campaign_id == new.pk and second.content == "Answer two to g-0"
    assert new.item_count == 1  # gold checks are not counted as work


def test_new_version_errors(make_campaign, manager):
    campaign = make_campaign(items=1)
    with pytest.raises(ApplicationError, match="^copy_items: must be one of unjudged, incomplete, all, none$"):
        campaign_new_version(campaign=campaign, actor=manager, copy_items="some")
    with pytest.raises(ApplicationError, match="^criteria: a ranking campaign ranks on one overall order"):
        campaign_new_version(campaign=campaign, actor=manager, kind="ranking", criteria=HELPFUL)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.ACTIVE  # nothing happened
    assert Campaign.objects.count() == 1
    campaign_set_status(campaign=campaign, status="closed")
    with pytest.raises(ConflictError, match="This campaign is closed; create a new campaign instead"):
        campaign_new_version(campaign=campaign, actor=manager)


def test_new_version_page(client, make_campaign, manager, annotator):
    campaign = make_campaign(items=2, annotators=[annotator])
    judge(campaign, annotator, n=1)
    client.force_login(manager)
    data = {"name": "Test campaign", "kind": "pairwise", "overlap": "1", "lease_seconds": "600",
            "gold_percent": "0", "instructions": "", "allow_ties": "on", "copy_items": "unjudged",
            "criteria-TOTAL_FORMS": "1", "criteria-INITIAL_FORMS": "0", "criteria-0-name": "honesty",
            "criteria-0-scale_min": "0", "criteria-0-scale_max": "1"}
    response = client.post(reverse("campaign_new_version", args=[campaign.pk]), data)
    new = Campaign.objects.get(parent=campaign)
    assert response.status_code == 302 and response["Location"] == reverse("campaign_detail", args=[new.pk])
    assert new.criteria[0]["name"] == "honesty" and not new.use_strength and new.item_count == 1


# --- lifecycle -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["draft", "paused", "closed"])
def test_only_an_active_campaign_is_served(make_campaign, annotator, status):
    campaign = make_campaign(items=2, annotators=[annotator], active=status != "draft")
    if status != "draft":
        campaign_set_status(campaign=campaign, status=status)
    with pytest.raises(ConflictError) as exc:
        assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    assert exc.value.message == f"This campaign is {status}; nothing is being served."


def test_status_changes_follow_the_lifecycle_and_are_audited(make_campaign, manager):
    campaign = make_campaign(items=0, active=False)
    with pytest.raises(ConflictError, match="Import items before activating the campaign."):
        campaign_set_status(campaign=campaign, status="active", actor=manager)
    with pytest.raises(ConflictError, match="A draft campaign cannot become paused."):
        campaign_set_status(campaign=campaign, status="paused", actor=manager)
    items_import(campaign=campaign, lines=jsonl(pair_rows(1)), actor=manager)
    for status in ("active", "paused", "active", "closed"):
        campaign_set_status(campaign=campaign, status=status, actor=manager)
    with pytest.raises(ConflictError, match="A closed campaign cannot become active."):
        campaign_set_status(campaign=campaign, status="active", actor=manager)
    changes = [(e.before["status"], e.after["status"])
               for e in AuditEntry.objects.filter(campaign=campaign, action="campaign.status").order_by("pk")]
    assert changes == [("draft", "active"), ("active", "paused"), ("paused", "active"), ("active", "closed")]


# --- close into a dataset --------------------------------------------------------------------------


def test_close_into_dataset_closes_and_snapshots(make_campaign, manager, annotator):
    campaign = make_campaign(items=3, annotators=[annotator])
    judge(campaign, annotator)
    dataset = campaign_close_into_dataset(campaign=campaign, actor=manager, method="majority",
                                          params={"bootstrap_rounds": 10})
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CLOSED
    assert dataset.version == 1 and dataset.status == Dataset.Status.BUILDING
    assert dataset_build(dataset_id=dataset.pk).status == Dataset.Status.READY
    assert actions(campaign)[-3:] == ["campaign.status", "dataset.create", "campaign.close_into_dataset"]


def test_close_into_dataset_without_judgments_leaves_the_campaign_open(make_campaign, manager):
    campaign = make_campaign(items=2)
    with pytest.raises(ConflictError, match="There are no judgments to aggregate yet; the campaign was left as it is."):
        campaign_close_into_dataset(campaign=campaign, actor=manager)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.ACTIVE and not Dataset.objects.exists()


def test_close_into_dataset_with_bad_parameters_changes_nothing(make_campaign, manager, annotator):
    campaign = make_campaign(items=1, annotators=[annotator])
    judge(campaign, annotator)
    with pytest.raises(ApplicationError, match="^params.seed: must be an integer >= 0"):
        campaign_close_into_dataset(campaign=campaign, actor=manager, method="majority", params={"seed": -1})
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.ACTIVE


def test_close_page_redirects_to_the_dataset(client, make_campaign, manager, annotator):
    campaign = make_campaign(items=1, annotators=[annotator])
    judge(campaign, annotator)
    client.force_login(manager)
    response = client.post(reverse("campaign_close", args=[campaign.pk]), {"method": "majority"})
    dataset = Dataset.objects.get(campaign=campaign)
    assert response.status_code == 302 and response["Location"] == reverse("dataset_detail", args=[dataset.pk])
    page = client.get(response["Location"])
    assert b"The snapshot is being built" in page.content and b'http-equiv="refresh"' in page.content


# --- the API ---------------------------------------------------------------------------------------


def test_api_update_new_version_and_close(client_for, make_campaign, manager, annotator):
    campaign = make_campaign(items=2, annotators=[annotator])
    api = client_for(manager)
    res = api.post(reverse("api:campaign_update", args=[campaign.pk]), {"overlap": 2, "name": "API"}, format="json")
    assert res.status_code == 200 and res.json()["overlap"] == 2 and res.json()["name"] == "API"
    judge(campaign, annotator, n=1)
    res = api.post(reverse("api:campaign_update", args=[campaign.pk]), {"allow_ties": False}, format="json")
    assert res.status_code == 409
    assert res.json()["message"].startswith("allow_ties: cannot change once judgments exist (1 so far)")
    res = api.post(reverse("api:campaign_new_version", args=[campaign.pk]),
                   {"allow_ties": False, "copy_items": "all"}, format="json")
    assert res.status_code == 201, res.content
    body = res.json()
    assert body["parent"] == campaign.pk and body["version"] == 2 and body["item_count"] == 2
    res = api.post(reverse("api:campaign_close_into_dataset", args=[body["id"]]), {"method": "majority"},
                   format="json")
    assert res.status_code == 409 and res.json()["message"].startswith("There are no judgments to aggregate yet")
    res = api.post(reverse("api:campaign_close_into_dataset", args=[campaign.pk]), {"method": "majority"},
                   format="json")
    assert res.status_code == 201 and res.json()["version"] == 1


def test_member_add_records_role_changes(make_campaign, manager, make_user):
    campaign = make_campaign(items=1)
    other = make_user("lead", Role.MANAGER)
    membership_add(campaign=campaign, user=other, role=Role.ANNOTATOR, actor=manager)
    membership_add(campaign=campaign, user=other, role=Role.MANAGER, cap=None, actor=manager)
    entries = AuditEntry.objects.filter(campaign=campaign, target="user:lead").order_by("pk")
    assert [(e.action, e.before, e.after["role"]) for e in entries] == [
        ("membership.add", None, "annotator"), ("membership.role", {"role": "annotator", "cap": None}, "manager"),
    ]


def test_campaign_create_is_audited_with_its_settings(manager):
    campaign = campaign_create(created_by=manager, name="Audited", overlap=3)
    entry = AuditEntry.objects.get(campaign=campaign)
    assert (entry.action, entry.actor, entry.before) == ("campaign.create", manager, None)
    assert entry.after["overlap"] == 3 and entry.after["status"] == "draft" and entry.after["kind"] == "pairwise"
