"""The manager's console, reading pages: items with judgments and consensus, the judging preview,
and the audit log (page and API)."""

import json

import pytest
from django.urls import reverse

from annotation.core.snapshot import DEFAULT_METHOD
from annotation.models import Assignment, AuditEntry, Campaign, DatasetComparison, Judgment
from annotation.services.campaigns import campaign_create, campaign_update
from annotation.services.datasets import dataset_build, dataset_create
from annotation.services.people import membership_get, membership_set_excluded
from annotation.services.serving import assignment_lease_next, judgment_submit
from tests.annotation.support import judge_all, prefer

pytestmark = pytest.mark.django_db

SECRET_MODELS = ("gpt-secret-7b", "llama-hidden-70b")


def prefer_first_model(campaign, annotator, model="model-x") -> None:
    while a := assignment_lease_next(campaign_id=campaign.pk, annotator=annotator):
        by_model = {link.response.model_name: link.response_id for link in a.item.item_responses.select_related("response")}
        judgment_submit(assignment_id=a.pk, annotator=annotator,
                        answer={"outcome": "preferred", "preferred_response_id": by_model[model], "strength": 3,
                                "rationale": "<b>bold</b> claim"})


# --- items -------------------------------------------------------------------------------------------


def test_items_page_shows_judgments_by_annotator_and_consensus(client, make_campaign, manager, annotator, annotator2):
    campaign = make_campaign(items=3, overlap=2, annotators=[annotator, annotator2])
    prefer_first_model(campaign, annotator, "model-y")
    prefer_first_model(campaign, annotator2, "model-y")
    client.force_login(manager)
    page = client.get(reverse("campaign_items", args=[campaign.pk]))
    text = page.content.decode()
    rows = page.context["rows"]
    assert len(rows) == 3
    assert [j["judgment"].annotator.username for j in rows[0]["judgments"]] == ["ann", "ann2"]
    assert rows[0]["judgments"][0]["text"] == "Response 2 preferred (much better)"
    assert rows[0]["consensus"] == {"text": "Response 2 preferred", "agreement": 1.0, "judgments": 2, "outcome": "chosen"}
    assert "model-y" in text  # managers see which model wrote what
    assert "&lt;b&gt;bold&lt;/b&gt; claim" in text and "<b>bold</b>" not in text  # text, never live HTML

    membership_set_excluded(membership=membership_get(campaign=campaign, user_id=annotator2.pk), actor=manager,
                            excluded=True)
    rows = client.get(reverse("campaign_items", args=[campaign.pk])).context["rows"]
    assert rows[0]["consensus"]["judgments"] == 1 and rows[0]["judgments"][1]["excluded"]


def test_items_page_filters_and_paginates(client, make_campaign, manager, annotator):
    campaign = make_campaign(items=25, annotators=[annotator])
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    judgment_submit(assignment_id=a.pk, annotator=annotator, answer={"outcome": "tie"})
    client.force_login(manager)
    url = reverse("campaign_items", args=[campaign.pk])
    first = client.get(url)
    assert len(first.context["rows"]) == 20 and first.context["page"].paginator.num_pages == 2
    assert len(client.get(url + "?page=2").context["rows"]) == 5
    judged = client.get(url + "?show=judged").context["rows"]
    assert [r["item"].pk for r in judged] == [a.item_id] and judged[0]["consensus"]["text"] == "Tie"
    assert len(client.get(url + "?show=open").context["page"].object_list) == 20
    assert client.get(url + "?show=open").context["page"].paginator.count == 24


def _dataset_decisions(dataset) -> dict[int, tuple[str, int | None]]:
    return {
        c.item_id: (c.outcome, c.chosen_response_id if c.outcome == "chosen" else None)
        for c in DatasetComparison.objects.filter(dataset=dataset)
    }


def test_items_page_api_and_dataset_agree_item_by_item(client, client_for, make_campaign, manager, annotator,
                                                       annotator2):
    """The items page and the items API decide each item as a dataset built with the form's defaults does:
    same method, parameters and thresholds, a 1–1 split included (undecided or tie, never a preference)."""
    campaign = make_campaign(items=12, overlap=2, annotators=[annotator, annotator2])
    ids = sorted(campaign.items.values_list("pk", flat=True))
    judge_all(campaign, annotator, prefer("model-x"))
    # The second annotator disagrees on a third of the items: 1–1 splits on those.
    judge_all(campaign, annotator2, lambda i, m: prefer("model-y" if ids.index(i) % 3 == 0 else "model-x")(i, m))
    assert campaign.items.filter(judgment_count__lt=2).count() == 0
    dataset = dataset_build(dataset_id=dataset_create(campaign=campaign, method=DEFAULT_METHOD, params=None,
                                                      created_by=manager).pk)
    assert dataset.status == "ready", dataset.error
    expected = _dataset_decisions(dataset)
    splits = {i for i in ids if ids.index(i) % 3 == 0}
    assert {expected[i][0] for i in splits} <= {"undecided", "tie"} and len(splits) == 4
    assert {expected[i][0] for i in set(ids) - splits} == {"chosen"}

    client.force_login(manager)
    rows = client.get(reverse("campaign_items", args=[campaign.pk])).context["rows"]
    page = {}
    for row in rows:
        c = row["consensus"]
        chosen = next(r["response"].pk for r in row["responses"] if c["text"] == f"{r['label']} preferred") \
            if c["outcome"] == "chosen" else None
        page[row["item"].pk] = (c["outcome"], chosen)
    assert page == expected

    body = client_for(manager).get(reverse("api:campaign_items", args=[campaign.pk])).json()
    api = {r["id"]: (r["consensus"]["outcome"], r["consensus"]["order"][0] if r["consensus"]["outcome"] == "chosen"
                     else None) for r in body["results"]}
    assert api == expected
    assert {r["consensus"]["method"] for r in body["results"]} == {DEFAULT_METHOD}


def test_items_page_is_for_the_campaigns_managers(client, campaign, annotator, researcher):
    for user in (annotator, researcher):
        client.force_login(user)
        assert client.get(reverse("campaign_items", args=[campaign.pk])).status_code == 403


def test_items_api_lists_models_judgments_and_consensus(client_for, make_campaign, manager, annotator):
    campaign = make_campaign(items=2, annotators=[annotator])
    prefer_first_model(campaign, annotator, "model-x")
    body = client_for(manager).get(reverse("api:campaign_items", args=[campaign.pk]) + "?show=judged").json()
    assert body["count"] == 2 and body["pages"] == 1
    item = body["results"][0]
    winner = next(r for r in item["responses"] if r["model"] == "model-x")
    assert item["consensus"]["order"][0] == winner["id"] and item["consensus"]["tie"] is False
    assert item["judgments"][0]["annotator"] == "ann" and item["judgments"][0]["excluded"] is False
    res = client_for(manager).get(reverse("api:campaign_items", args=[campaign.pk]) + "?show=bogus")
    assert res.status_code == 400 and res.json()["message"] == "show: must be one of all, open, judged, gold"


# --- the judging preview -----------------------------------------------------------------------------


def _preview_urls(page) -> dict:
    config = page.context["judge_config"]
    return {"next": config["nextUrl"], "submit": config["submitUrlTemplate"], "skip": config["skipUrlTemplate"],
            "heartbeat": config["heartbeatUrlTemplate"]}


def test_campaign_preview_serves_real_items_without_models_and_stores_nothing(client, make_campaign, manager):
    from annotation.services.imports import items_import
    from tests.conftest import jsonl, pair_rows

    campaign = make_campaign(items=0, active=False, use_strength=True)
    items_import(campaign=campaign, lines=jsonl(pair_rows(2, models=SECRET_MODELS)))
    client.force_login(manager)
    page = client.get(reverse("campaign_preview", args=[campaign.pk]))
    assert page.status_code == 200 and b'data-testid="preview-banner"' in page.content
    assert page.context["judge_config"]["options"]["strength"] is True
    urls = _preview_urls(page)
    nxt = client.post(urls["next"], {}, content_type="application/json")
    assert nxt.status_code == 200
    assert not any(m in nxt.content.decode() for m in SECRET_MODELS) and "model" not in nxt.content.decode()
    assignment = nxt.json()["assignment"]
    ids = [r["id"] for r in assignment["item"]["responses"]]
    submit = urls["submit"].replace("{id}", str(assignment["id"]))
    # The real validation: strength is required in this campaign.
    res = client.post(submit, {"outcome": "preferred", "preferred_response_id": ids[0]},
                      content_type="application/json")
    assert res.status_code == 400
    assert res.json() == {"message": "strength: is required: 1 slightly, 2 clearly or 3 much better",
                          "extra": {"fields": {"strength": ["is required: 1 slightly, 2 clearly or 3 much better"]}}}
    res = client.post(submit, {"outcome": "preferred", "preferred_response_id": ids[0], "strength": 2},
                      content_type="application/json")
    assert res.status_code == 201 and res.json()["preview"] is True
    assert client.post(urls["heartbeat"].replace("{id}", str(assignment["id"])), {},
                       content_type="application/json").status_code == 200
    assert client.post(urls["skip"].replace("{id}", str(assignment["id"])), {"reason": "broken"},
                       content_type="application/json").json()["status"] == "skipped"
    assert not Judgment.objects.exists() and not Assignment.objects.exists()


def test_draft_preview_renders_the_judge_for_unsaved_settings(client, manager):
    client.force_login(manager)
    data = {"name": "Unsaved", "kind": "ranking", "overlap": "1", "lease_seconds": "600", "gold_percent": "0",
            "instructions": "# Rank them", "criteria-TOTAL_FORMS": "0", "criteria-INITIAL_FORMS": "0"}
    page = client.post(reverse("campaign_preview_draft"), data)
    assert page.status_code == 200 and not Campaign.objects.exists()
    config = page.context["judge_config"]
    assert (config["kind"], config["campaignName"], config["instructions"]) == ("ranking", "Unsaved", "# Rank them")
    urls = _preview_urls(page)
    item = client.post(urls["next"], {}, content_type="application/json").json()["assignment"]
    assert len(item["item"]["responses"]) == 3
    a, b, c = (r["id"] for r in item["item"]["responses"])  # opaque handles, as the real `next` gives
    assert not {a, b, c} & {1, 2, 3, "1", "2", "3"}
    submit = urls["submit"].replace("{id}", str(item["id"]))
    res = client.post(submit, {"outcome": "ranked", "ranking": [[a], [b]]}, content_type="application/json")
    assert res.status_code == 400 and res.json()["message"] == f"ranking: response {c} is missing: rank every response"
    res = client.post(submit, {"outcome": "ranked", "ranking": [[3], [1], [2]]}, content_type="application/json")
    assert res.status_code == 400
    assert res.json()["message"] == "ranking[0]: is not a response of this item (send the ids `next` gave)"
    res = client.post(submit, {"outcome": "ranked", "ranking": [[c], [a], [b]]}, content_type="application/json")
    assert res.status_code == 201 and res.json()["answer"] == {"ranking": [[c], [a], [b]]}


def test_draft_preview_lists_what_to_fix(client, manager):
    client.force_login(manager)
    data = {"name": "", "kind": "rating", "overlap": "1", "lease_seconds": "600", "gold_percent": "0",
            "criteria-TOTAL_FORMS": "0", "criteria-INITIAL_FORMS": "0"}
    page = client.post(reverse("campaign_preview_draft"), data)
    assert page.context["problems"] == ["Campaign name: This field is required."]
    data["name"] = "Now named"
    page = client.post(reverse("campaign_preview_draft"), data)
    assert page.context["problems"] == ["criteria: a rating campaign needs at least one criterion to rate on"]


def test_preview_token_is_bound_to_its_manager(client, make_campaign, manager, make_user):
    campaign = make_campaign(items=1)
    client.force_login(manager)
    urls = _preview_urls(client.get(reverse("campaign_preview", args=[campaign.pk])))
    other = make_user("other_manager", "manager")
    client.force_login(other)
    res = client.post(urls["next"], {}, content_type="application/json")
    assert res.status_code == 404 and res.json()["message"] == "Preview not found."
    tampered = urls["next"].replace("/next/", "x/next/")
    client.force_login(manager)
    assert client.post(tampered, {}, content_type="application/json").status_code == 404


# --- the audit log -----------------------------------------------------------------------------------


def test_audit_page_and_api_show_who_did_what_when(client, client_for, manager, make_user):
    campaign = campaign_create(created_by=manager, name="Audited")
    campaign_update(campaign=campaign, actor=manager, overlap=3)
    client.force_login(manager)
    page = client.get(reverse("campaign_audit", args=[campaign.pk]))
    text = page.content.decode()
    assert "campaign.settings" in text and "campaign.create" in text and "manager" in text
    body = client_for(manager).get(reverse("api:campaign_audit", args=[campaign.pk])).json()
    assert body["count"] == 2
    newest = body["results"][0]
    assert (newest["actor"], newest["action"], newest["before"], newest["after"]) == (
        "manager", "campaign.settings", {"overlap": 1}, {"overlap": 3})
    assert json.dumps(body)  # JSON all the way down
    other = make_user("other_manager", "manager")
    assert client_for(other).get(reverse("api:campaign_audit", args=[campaign.pk])).status_code == 404
    assert AuditEntry.objects.filter(campaign=campaign).count() == 2


def test_items_consensus_follows_new_judgments_and_exclusions(client, make_campaign, manager, annotator, annotator2):
    """The campaign's decisions are cached per judgment state: a new judgment or an exclusion shows at once."""
    campaign = make_campaign(items=1, overlap=2, annotators=[annotator, annotator2])
    judge_all(campaign, annotator, prefer("model-x"))
    client.force_login(manager)
    url = reverse("campaign_items", args=[campaign.pk])
    first = client.get(url).context["rows"][0]["consensus"]
    assert (first["outcome"], first["text"]) == ("undecided", "Undecided (too few judgments agree)")
    judge_all(campaign, annotator2, prefer("model-x"))
    assert client.get(url).context["rows"][0]["consensus"]["outcome"] == "chosen"
    membership_set_excluded(membership=membership_get(campaign=campaign, user_id=annotator2.pk), actor=manager,
                            excluded=True)
    assert client.get(url).context["rows"][0]["consensus"]["outcome"] == "undecided"
