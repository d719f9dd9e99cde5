"""Importing into a campaign: all or nothing, duplicates, and the real HH file."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.errors import ConflictError
from annotation.models import Campaign, Item, ItemResponse, Prompt, Response
from annotation.services.campaigns import campaign_set_status
from annotation.services.imports import ImportRejected, items_import
from tests.conftest import hh_file, jsonl, pair_rows

pytestmark = pytest.mark.django_db


def test_import_creates_prompts_responses_and_items_in_order(make_campaign):
    campaign = make_campaign(items=0, active=False)
    result = items_import(campaign=campaign, lines=jsonl(pair_rows(3)))
    assert (result.items, result.responses, result.formats) == (3, 6, {"arbiter": 3})
    item = Item.objects.get(campaign=campaign, prompt__external_id="p1")
    assert [ir.response.content for ir in item.item_responses.select_related("response")] == [
        "Answer one to 1", "Answer two to 1"
    ]
    assert [ir.response.model_name for ir in item.item_responses.all()] == ["model-x", "model-y"]
    assert item.target == campaign.overlap and item.judgment_count == 0


def test_one_bad_line_imports_nothing_and_reports_every_bad_line(make_campaign):
    campaign = make_campaign(items=2, active=False)
    lines = jsonl(pair_rows(3, prefix="new")) + ["{oops"] + jsonl([{"prompt": "q", "chosen": "a"}])
    with pytest.raises(ImportRejected) as exc:
        items_import(campaign=campaign, lines=lines)
    assert exc.value.extra["error_count"] == 2
    assert [e["line"] for e in exc.value.extra["errors"]] == [4, 5]
    assert "2 bad line(s) of 5; nothing was imported." == exc.value.message
    assert Prompt.objects.filter(campaign=campaign).count() == 2  # what was stored before is intact


def test_ids_already_in_the_campaign_are_rejected(make_campaign):
    campaign = make_campaign(items=2, active=False)
    with pytest.raises(ImportRejected) as exc:
        items_import(campaign=campaign, lines=jsonl(pair_rows(1)))
    assert exc.value.extra["errors"] == [{"line": 1, "message": "id 'p0' is already in this campaign"}]


def test_gold_answer_is_stored_with_the_response_id(make_campaign):
    campaign = make_campaign(items=0, active=False)
    row = {**pair_rows(1)[0], "gold": {"preferred": 1}}
    items_import(campaign=campaign, lines=jsonl([row]))
    item = Item.objects.get(campaign=campaign)
    second = item.item_responses.get(position=1).response_id
    assert item.is_gold and item.gold == {"outcome": "preferred", "preferred_response_id": second}


def test_closed_campaign_refuses_imports(make_campaign):
    campaign = make_campaign(items=1)
    campaign_set_status(campaign=campaign, status=Campaign.Status.CLOSED)
    with pytest.raises(ConflictError, match="closed"):
        items_import(campaign=campaign, lines=jsonl(pair_rows(1, prefix="z")))


def test_hh_file_imports_1500_pairwise_items(make_campaign):
    """The 1,500 HH pairs become 1,500 items with the shared conversation and the two replies."""
    HH_FILE = hh_file()
    campaign = make_campaign(items=0, active=False)
    with HH_FILE.open("rb") as fh:
        result = items_import(campaign=campaign, lines=fh)
    assert result.items == 1500
    assert Item.objects.filter(campaign=campaign).count() == 1500
    assert ItemResponse.objects.filter(item__campaign=campaign).count() == 3000
    first = json.loads(HH_FILE.open().readline())
    prompt = Prompt.objects.filter(campaign=campaign).order_by("pk").first()
    assert prompt.messages[0] == {"role": "user", "content": "what are some pranks with a pen i can do?"}
    assert len(prompt.messages) == 5
    chosen, rejected = (ir.response for ir in prompt.items.get().item_responses.select_related("response"))
    assert first["chosen"].endswith("\n\nAssistant: " + chosen.content)
    assert first["rejected"].endswith("\n\nAssistant: " + rejected.content)
    assert chosen.metadata == {"source_label": "chosen"}


def test_import_command_reports_bad_lines(make_campaign, tmp_path, capsys):
    campaign = make_campaign(items=0, active=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(jsonl(pair_rows(2)) + ["nope"]))
    with pytest.raises(CommandError, match="1 bad line"):
        call_command("import_items", campaign.pk, str(bad))
    assert "line 3: not valid JSON" in capsys.readouterr().err
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(jsonl(pair_rows(2))))
    call_command("import_items", campaign.pk, str(good))
    assert Response.objects.filter(prompt__campaign=campaign).count() == 4
