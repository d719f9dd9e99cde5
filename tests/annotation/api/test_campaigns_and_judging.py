"""The REST API: judging, campaigns and imports, as the browser and scripts use it."""

import io
import json

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import Assignment, Judgment, Membership, Prompt, Role
from annotation.services.campaigns import campaign_set_status, membership_add
from annotation.services.imports import items_import
from annotation.services.serving import assignment_handles
from tests.conftest import PASSWORD, jsonl, pair_rows

pytestmark = pytest.mark.django_db


def next_url(campaign) -> str:
    return reverse("api:assignment_next", kwargs={"campaign_id": campaign.pk})


def submit_url(assignment_id: int) -> str:
    return reverse("api:judgment_submit", kwargs={"assignment_id": assignment_id})


def test_next_returns_item_without_model_names(client_for, make_campaign, annotator):
    """The annotator's JSON has content and opaque ids only — never a model name, never a response's database
    id: each response is named by this assignment's handle, in display order."""
    campaign = make_campaign(items=0, active=False, annotators=[annotator])
    items_import(campaign=campaign, lines=jsonl(pair_rows(2, models=("gpt-secret-7b", "llama-hidden-70b"))))
    campaign_set_status(campaign=campaign, status="active")
    res = client_for(annotator).post(next_url(campaign), {}, format="json")
    assert res.status_code == 200
    body = res.content.decode()
    assert "gpt-secret-7b" not in body and "llama-hidden-70b" not in body and "model" not in body
    data = res.json()
    assignment = data["assignment"]
    assert set(assignment) == {"id", "expires_at", "item"}
    assert set(assignment["item"]) == {"id", "messages", "responses"}
    assert all(set(r) == {"id", "content"} for r in assignment["item"]["responses"])
    stored = Assignment.objects.get(pk=assignment["id"])
    handles = assignment_handles(stored.pk, stored.display_order)
    assert [r["id"] for r in assignment["item"]["responses"]] == [handles[rid] for rid in stored.display_order]
    assert all(str(rid) not in handles.values() for rid in stored.display_order)
    assert data["progress"] == {"done": 0, "total": 2, "mine": 0}


def test_submit_then_next_and_progress(client_for, campaign, annotator):
    client = client_for(annotator)
    a = client.post(next_url(campaign), {}, format="json").json()["assignment"]
    right = a["item"]["responses"][1]["id"]
    res = client.post(submit_url(a["id"]), {"outcome": "preferred", "preferred_response_id": right,
                                            "strength": 1, "time_taken_ms": 1500}, format="json")
    assert res.status_code == 201, res.content
    assert res.json()["preferred_response_id"] == right
    stored = Assignment.objects.get(pk=a["id"])
    assert Judgment.objects.get(assignment=stored).preferred_response_id == stored.display_order[1]
    again = client.post(submit_url(a["id"]), {"outcome": "tie"}, format="json")
    assert again.status_code == 200 and again.json()["id"] == res.json()["id"]
    data = client.post(next_url(campaign), {}, format="json").json()
    assert data["assignment"]["id"] != a["id"] and data["progress"]["mine"] == 1


def test_errors_have_message_and_extra_and_name_the_field(client_for, campaign, annotator):
    client = client_for(annotator)
    a = client.post(next_url(campaign), {}, format="json").json()["assignment"]
    res = client.post(submit_url(a["id"]), {"outcome": "preferred", "preferred_response_id": "999999", "strength": 2},
                      format="json")
    assert res.status_code == 400
    assert res.json() == {
        "message": "preferred_response_id: is not a response of this item (send the ids `next` gave)",
        "extra": {"fields": {"preferred_response_id": ["is not a response of this item (send the ids `next` gave)"]}},
    }
    res = client.post(submit_url(a["id"]), {"outcome": "sideways"}, format="json")
    assert res.status_code == 400 and res.json()["message"].startswith("outcome:")
    assert Judgment.objects.count() == 0


def test_forged_assignment_and_campaign_ids_reveal_nothing(client_for, campaign, make_campaign, annotator, annotator2,
                                                           outsider):
    a = client_for(annotator).post(next_url(campaign), {}, format="json").json()["assignment"]
    body = {"outcome": "tie"}
    # another annotator's assignment, and one that does not exist
    assert client_for(annotator2).post(submit_url(a["id"]), body, format="json").status_code == 404
    assert client_for(annotator).post(submit_url(10**9), body, format="json").status_code == 404
    # a campaign the user is not a member of
    other = make_campaign(items=2, name="Private")
    res = client_for(annotator).post(next_url(other), {}, format="json")
    assert res.status_code == 404 and res.json()["message"] == "Campaign not found."
    assert client_for(outsider).get(reverse("api:campaign_detail", kwargs={"campaign_id": campaign.pk})).status_code == 404
    assert Judgment.objects.count() == 0


def test_skip_endpoint(client_for, campaign, annotator):
    client = client_for(annotator)
    a = client.post(next_url(campaign), {}, format="json").json()["assignment"]
    url = reverse("api:assignment_skip", kwargs={"assignment_id": a["id"]})
    assert client.post(url, {"reason": "nope"}, format="json").status_code == 400
    res = client.post(url, {"reason": "cant_judge"}, format="json")
    assert res.status_code == 200 and res.json() == {"id": a["id"], "status": "skipped"}
    assert client.post(submit_url(a["id"]), {"outcome": "tie"}, format="json").status_code == 409


def test_token_auth_for_scripts_and_session_needs_csrf(campaign, annotator):
    res = APIClient().post(reverse("api:auth_token"), {"username": "ann", "password": PASSWORD}, format="json")
    assert res.status_code == 200
    token = res.json()["token"]
    assert Token.objects.get(user=annotator).key == token
    bad = APIClient().post(reverse("api:auth_token"), {"username": "ann", "password": "wrong"}, format="json")
    assert bad.status_code == 400 and bad.json()["message"] == "Unable to log in with these credentials."

    scripted = APIClient()
    scripted.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert scripted.post(next_url(campaign), {}, format="json").status_code == 200

    anonymous = APIClient().post(next_url(campaign), {}, format="json")
    assert anonymous.status_code == 401

    browser = APIClient(enforce_csrf_checks=True)
    browser.login(username="ann", password=PASSWORD)
    res = browser.post(next_url(campaign), {}, format="json")
    assert res.status_code == 403 and "CSRF" in res.json()["message"]


def test_campaign_create_list_status_members_and_roles(client_for, manager, annotator, researcher):
    client = client_for(manager)
    res = client.post(reverse("api:campaign_create"), {"name": "Round 1", "overlap": 3}, format="json")
    assert res.status_code == 201, res.content
    cid = res.json()["id"]
    assert res.json()["status"] == "draft"
    bad = client.post(reverse("api:campaign_create"), {"name": "x", "overlap": 0}, format="json")
    assert bad.status_code == 400 and "overlap" in bad.json()["extra"]["fields"]
    # activating with no items is refused
    status_url = reverse("api:campaign_status", kwargs={"campaign_id": cid})
    res = client.post(status_url, {"status": "active"}, format="json")
    assert res.status_code == 409 and res.json()["message"] == "Import items before activating the campaign."
    members = reverse("api:campaign_member_add", kwargs={"campaign_id": cid})
    assert client.post(members, {"username": "ann"}, format="json").status_code == 201
    res = client.post(members, {"username": "res", "role": "annotator"}, format="json")
    assert res.status_code == 400 and "res is a researcher and cannot be a annotator here" in res.json()["message"]
    res = client.post(members, {"username": "ghost"}, format="json")
    assert res.status_code == 400 and res.json()["message"] == "username: no active user called 'ghost'"
    assert Membership.objects.filter(campaign_id=cid, user=annotator, role=Role.ANNOTATOR).exists()
    # annotators cannot create campaigns; they see the campaigns they belong to
    assert client_for(annotator).post(reverse("api:campaign_create"), {"name": "x"}, format="json").status_code == 403
    listed = client_for(annotator).get(reverse("api:campaign_list")).json()
    assert [c["id"] for c in listed] == [cid]
    assert client_for(researcher).get(reverse("api:campaign_list")).json() == []


def test_import_endpoint_all_or_nothing(client_for, make_campaign, manager, annotator):
    campaign = make_campaign(items=0, active=False, annotators=[annotator])
    url = reverse("api:campaign_import", kwargs={"campaign_id": campaign.pk})
    bad = "\n".join(jsonl(pair_rows(2)) + ['{"prompt": "q", "chosen": "a", "rejected": 3}'])
    res = client_for(manager).post(url, {"file": io.BytesIO(bad.encode()), "format": "auto"}, format="multipart")
    assert res.status_code == 400
    assert res.json()["extra"]["errors"] == [{"line": 3, "message": "rejected: must be a list of {role, content} messages"}]
    assert Prompt.objects.filter(campaign=campaign).count() == 0
    good = "\n".join(jsonl(pair_rows(2)))
    res = client_for(manager).post(url, {"file": io.BytesIO(good.encode())}, format="multipart")
    assert res.status_code == 201 and res.json() == {
        "items": 2, "responses": 4, "formats": {"arbiter": 2}, "skipped_count": 0, "skipped": [],
        "warning_count": 0, "warnings": [],
        "near_duplicate_rule": "Jaccard >= 0.9 on word 5-shingles, found with MinHash LSH (64 permutations)",
    }
    # annotators cannot import, even into their own campaign
    res = client_for(annotator).post(url, {"file": io.BytesIO(good.encode())}, format="multipart")
    assert res.status_code == 403


def test_import_answers_400_naming_the_line_for_hostile_json(client_for, make_campaign, manager):
    """JSON nested too deep or an integer too long is a 400 naming the line (it was a 500), nothing stored."""
    campaign = make_campaign(items=0, active=False)
    url = reverse("api:campaign_import", kwargs={"campaign_id": campaign.pk})
    body = "\n".join([*jsonl(pair_rows(1)), "[" * 50_000 + "]" * 50_000, '{"prompt": "q", "n": ' + "1" * 5000 + "}"])
    res = client_for(manager).post(url, {"file": io.BytesIO(body.encode())}, format="multipart")
    assert res.status_code == 400
    errors = res.json()["extra"]["errors"]
    assert errors[0] == {"line": 2, "message": "JSON nested too deep (more than 64 levels)"}
    assert errors[1]["line"] == 3 and errors[1]["message"].startswith("an integer is too large")
    assert Prompt.objects.filter(campaign=campaign).count() == 0


def test_import_api_skips_duplicates_on_request_and_reports_them(client_for, make_campaign, manager):
    """By default a repeated line is a 400; with skip_duplicates=true it is left out and listed."""
    campaign = make_campaign(items=0, active=False)
    url = reverse("api:campaign_import", kwargs={"campaign_id": campaign.pk})
    rows = pair_rows(2)
    body = "\n".join(jsonl([*rows, {**rows[0], "id": "copy"}]))
    res = client_for(manager).post(url, {"file": io.BytesIO(body.encode())}, format="multipart")
    assert res.status_code == 400
    assert res.json()["extra"]["errors"] == [{"line": 3, "message": (
        "duplicate of line 1: the same conversation and replies after Unicode NFC normalization and trimming "
        "outer whitespace; remove it, or choose to skip duplicates")}]
    assert Prompt.objects.filter(campaign=campaign).count() == 0
    res = client_for(manager).post(url, {"file": io.BytesIO(body.encode()), "skip_duplicates": "true"},
                                   format="multipart")
    assert res.status_code == 201
    assert (res.json()["items"], res.json()["skipped_count"]) == (2, 1)
    assert res.json()["skipped"] == [{"line": 3, "message": "duplicate of line 1 (same conversation and replies)"}]


def test_import_check_api_reports_skips_and_near_duplicates(client_for, make_campaign, manager):
    """The check endpoint shows the same report: skipped duplicates and near-duplicate warnings, nothing stored."""
    campaign = make_campaign(items=1, active=False)
    url = reverse("api:campaign_import_validate", kwargs={"campaign_id": campaign.pk})
    rows = [{"id": "n1", "prompt": "Question 0?", "chosen": "Other", "rejected": "Replies"},
            {**pair_rows(1)[0], "id": "n2"}]
    res = client_for(manager).post(url, {"file": io.BytesIO("\n".join(jsonl(rows)).encode()), "skip_duplicates": "true"},
                                   format="multipart")
    body = res.json()
    assert res.status_code == 200 and body["ok"] and body["items"] == 1
    assert body["skipped"] == [{"line": 2, "message": "duplicate of an item already in this campaign"}]
    assert body["warnings"] == [{"line": 1, "message": "prompt is a near-duplicate of prompt 'p0' already in this "
                                 "campaign (Jaccard >= 0.9 on word 5-shingles, found with MinHash LSH (64 permutations))"}]
    assert body["message"] == "1 item(s) ready (1 trl). 1 duplicate line(s) skipped. 1 near-duplicate prompt(s) flagged."
    assert Prompt.objects.filter(campaign=campaign).count() == 1


def test_manager_of_another_campaign_cannot_touch_this_one(client_for, campaign, make_user):
    other_manager = make_user("boss2", Role.MANAGER)
    url = reverse("api:campaign_import", kwargs={"campaign_id": campaign.pk})
    res = client_for(other_manager).post(url, {"file": io.BytesIO(b"{}")}, format="multipart")
    assert res.status_code == 404
    res = client_for(other_manager).post(reverse("api:campaign_status", kwargs={"campaign_id": campaign.pk}),
                                         {"status": "closed"}, format="json")
    assert res.status_code == 404
    campaign.refresh_from_db()
    assert campaign.status == "active"


def test_openapi_schema_lists_the_operations(client_for, annotator):
    res = client_for(annotator).get(reverse("api:schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert res.status_code == 200
    schema = json.loads(res.content)
    paths = schema["paths"]
    for path in ("/api/v1/campaigns/{campaign_id}/next/", "/api/v1/assignments/{assignment_id}/submit/",
                 "/api/v1/assignments/{assignment_id}/skip/", "/api/v1/campaigns/{campaign_id}/import/"):
        assert "post" in paths[path], path
    assert "Token" in json.dumps(schema["components"]["securitySchemes"])
    # Responses are named by opaque handles (strings), in what next sends and what submit takes and returns.
    components = schema["components"]["schemas"]
    assert components["AssignmentOutputItemShownResponse"]["properties"]["id"]["type"] == "string"
    assert components["JudgmentSubmitInput"]["properties"]["preferred_response_id"]["type"] == "string"
    assert components["JudgmentSubmitOutput"]["properties"]["preferred_response_id"]["type"] == "string"
    docs = client_for(annotator).get(reverse("api:docs"))
    assert docs.status_code == 200 and b"swagger-ui" in docs.content and b"cdn" not in docs.content.lower()


def test_manager_member_can_also_judge(client_for, campaign, manager):
    membership_add(campaign=campaign, user=manager, role=Role.MANAGER)
    res = client_for(manager).post(next_url(campaign), {}, format="json")
    assert res.status_code == 200 and res.json()["assignment"] is not None


def test_openapi_schema_validates_without_warnings(capsys):
    """Every operation's input and output is its own component; the schema is valid OpenAPI."""
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")
    err = capsys.readouterr().err
    assert "Warning" not in err and "Error" not in err.replace("Errors:   0", "")
