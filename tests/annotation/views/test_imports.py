"""The manager's console, data: validate → report → confirm; a bad file commits nothing; more data
into a running campaign."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.errors import ConflictError
from annotation.models import AuditEntry, Item, Prompt
from annotation.services.campaigns import campaign_set_status
from annotation.services.imports import ImportRejected, import_commit, import_stage, items_import
from annotation.services.serving import assignment_lease_next, judgment_submit
from tests.conftest import jsonl, pair_rows

pytestmark = pytest.mark.django_db

BAD_LINE = '{"id": "x", "messages": [{"role": "user", "content": "Hi?"}], "responses": [{"content": "one"}]}'


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def upload(lines: list[str], name: str = "items.jsonl") -> io.BytesIO:
    f = io.BytesIO(("\n".join(lines) + "\n").encode())
    f.name = name
    return f


def test_a_clean_file_is_reported_then_committed_on_confirm(make_campaign, manager):
    campaign = make_campaign(items=0, active=False)
    staged = import_stage(campaign=campaign, upload=upload(jsonl(pair_rows(3))), filename="three.jsonl")
    assert staged.ok and staged.token and len(staged.report.records) == 3
    assert not Prompt.objects.filter(campaign=campaign).exists()  # nothing before the confirmation
    result = import_commit(campaign=campaign, token=staged.token, actor=manager)
    assert result.items == 3 and Item.objects.filter(campaign=campaign).count() == 3
    entry = AuditEntry.objects.get(campaign=campaign, action="import.commit")
    assert entry.actor == manager
    assert entry.after == {"items": 3, "gold": 0, "responses": 6, "formats": {"arbiter": 3}, "source": "three.jsonl",
                           "skipped_duplicates": 0, "near_duplicate_warnings": 0}
    with pytest.raises(ConflictError) as exc:  # the same upload cannot be committed twice
        import_commit(campaign=campaign, token=staged.token, actor=manager)
    assert exc.value.message == (
        "This upload is no longer waiting to be imported: it was imported already, or it was checked more than a "
        "day ago. Upload the file again."
    )
    assert Item.objects.filter(campaign=campaign).count() == 3


def test_a_bad_file_reports_every_line_and_can_commit_nothing(make_campaign, manager):
    campaign = make_campaign(items=1, active=False)
    staged = import_stage(campaign=campaign, upload=upload([*jsonl(pair_rows(1, prefix="n")), BAD_LINE, "{oops"]))
    assert not staged.ok and staged.token == ""
    assert staged.report.errors == [
        (2, "responses: this campaign needs 2 responses per item, the line has 1"),
        (3, "not valid JSON (Expecting property name enclosed in double quotes at column 2)"),
    ]
    assert staged.report.summary() == "2 bad line(s) of 3; nothing was imported."
    with pytest.raises(ConflictError):
        import_commit(campaign=campaign, token="", actor=manager)
    assert Prompt.objects.filter(campaign=campaign).count() == 1


def test_lines_are_checked_again_at_commit(make_campaign, manager):
    """The campaign may change between check and confirm: the commit validates again, all or nothing."""
    campaign = make_campaign(items=0, active=False)
    staged = import_stage(campaign=campaign, upload=upload(jsonl(pair_rows(2))))
    items_import(campaign=campaign, lines=jsonl(pair_rows(1)))  # the same id arrives by another route meanwhile
    with pytest.raises(ImportRejected) as exc:
        import_commit(campaign=campaign, token=staged.token, actor=manager)
    assert exc.value.extra["errors"] == [
        {"line": 1, "message": "id 'p0' is already in this campaign"},
        {"line": 1, "message": "duplicate of an item already in this campaign: the same conversation and replies "
                               "after Unicode NFC normalization and trimming outer whitespace; remove it, or choose "
                               "to skip duplicates"},
    ]
    assert Prompt.objects.filter(campaign=campaign).count() == 1


def test_more_data_into_a_running_campaign_is_served_at_once(make_campaign, manager, annotator):
    campaign = make_campaign(items=1, annotators=[annotator])
    first = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    judgment_submit(assignment_id=first.pk, annotator=annotator, answer={"outcome": "tie"})
    assert assignment_lease_next(campaign_id=campaign.pk, annotator=annotator) is None  # all done
    staged = import_stage(campaign=campaign, upload=upload(jsonl(pair_rows(2, prefix="more"))))
    import_commit(campaign=campaign, token=staged.token, actor=manager)
    campaign.refresh_from_db()
    assert campaign.status == "active" and campaign.item_count == 3 and campaign.wanted_judgments == 3
    served = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    assert served.item.prompt.external_id in {"more0", "more1"}
    campaign_set_status(campaign=campaign, status="closed")
    with pytest.raises(ConflictError, match="This campaign is closed; open a new campaign for more data."):
        import_stage(campaign=campaign, upload=upload(jsonl(pair_rows(1, prefix="late"))))


def test_import_pages_check_then_confirm(client, make_campaign, manager):
    campaign = make_campaign(items=0, active=False)
    client.force_login(manager)
    url = reverse("campaign_import", args=[campaign.pk])
    bad = SimpleUploadedFile("bad.jsonl", ("\n".join([*jsonl(pair_rows(1)), BAD_LINE]) + "\n").encode())
    page = client.post(url, {"file": bad, "format": "auto"})
    text = page.content.decode()
    assert page.status_code == 200 and "Nothing was imported" in text and "1 bad line(s) of 2" in text
    assert "responses: this campaign needs 2 responses per item, the line has 1" in text
    assert 'data-testid="confirm-import"' not in text and not Prompt.objects.exists()

    good = SimpleUploadedFile("good.jsonl", ("\n".join(jsonl(pair_rows(2))) + "\n").encode())
    page = client.post(url, {"file": good, "format": "auto"})
    assert b"Ready to import" in page.content and b"Import 2 items" in page.content
    assert not Prompt.objects.exists()
    token = page.context["confirm"].initial["token"]
    response = client.post(reverse("campaign_import_confirm", args=[campaign.pk]), {"token": token})
    assert response.status_code == 302 and response["Location"] == reverse("campaign_detail", args=[campaign.pk])
    assert Prompt.objects.filter(campaign=campaign).count() == 2
    again = client.post(reverse("campaign_import_confirm", args=[campaign.pk]), {"token": token}, follow=True)
    assert "Nothing was imported. This upload is no longer waiting to be imported" in again.content.decode()


def test_api_validate_reports_without_storing(client_for, make_campaign, manager):
    campaign = make_campaign(items=0, active=False)
    url = reverse("api:campaign_import_validate", args=[campaign.pk])
    res = client_for(manager).post(url, {"file": upload([*jsonl(pair_rows(1)), BAD_LINE]), "format": "auto"},
                                   format="multipart")
    assert res.status_code == 200
    body = res.json()
    assert (body["ok"], body["items"], body["error_count"]) == (False, 1, 1)
    assert body["errors"] == [{"line": 2, "message": "responses: this campaign needs 2 responses per item, the line has 1"}]
    assert not Prompt.objects.exists()


def test_import_page_lists_skipped_duplicates_and_near_duplicate_prompts(client, make_campaign, manager):
    """With "Skip duplicates" ticked the report names each skipped line and each flagged prompt; confirm
    imports the rest and says how many were skipped."""
    campaign = make_campaign(items=1, active=False)
    client.force_login(manager)
    url = reverse("campaign_import", args=[campaign.pk])
    rows = [{"id": "n1", "prompt": "Question 0?", "chosen": "Other", "rejected": "Replies"},
            {**pair_rows(1)[0], "id": "n2"}, *pair_rows(2, prefix="new"), {**pair_rows(1, prefix="new")[0], "id": "n3"}]
    page = client.post(url, {"file": SimpleUploadedFile("d.jsonl", "\n".join(jsonl(rows)).encode()),
                             "format": "auto"})
    text = page.content.decode()
    assert "Nothing was imported" in text and "2 bad line(s) of 5" in text
    assert "duplicate of line 3: the same conversation and replies" in text
    page = client.post(url, {"file": SimpleUploadedFile("d.jsonl", "\n".join(jsonl(rows)).encode()),
                             "format": "auto", "skip_duplicates": "on"})
    text = page.content.decode()
    assert "Ready to import" in text and "Import 3 items" in text
    assert "2 duplicate lines will be skipped" in text
    assert "<td>2</td><td>duplicate of an item already in this campaign</td>" in text
    assert "<td>5</td><td>duplicate of line 3 (same conversation and replies)</td>" in text
    assert "1 near-duplicate prompt</h2>" in text
    assert "Near means Jaccard &gt;= 0.9 on word 5-shingles, found with MinHash LSH (64 permutations)." in text
    assert "prompt is a near-duplicate of prompt &#x27;p0&#x27; already in this campaign" in text
    assert Prompt.objects.filter(campaign=campaign).count() == 1
    done = client.post(reverse("campaign_import_confirm", args=[campaign.pk]),
                       {"token": page.context["confirm"].initial["token"]}, follow=True)
    assert "Imported 3 items (2 arbiter, 1 trl). 2 duplicate line(s) skipped." in done.content.decode()
    assert Prompt.objects.filter(campaign=campaign).count() == 4
