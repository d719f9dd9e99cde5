"""Exports: every file loads with the `datasets` library in the shape TRL expects, streams in
constant memory, and carries a dataset card."""

import asyncio
import io
import json
import tracemalloc

import pytest
from django.urls import reverse

from annotation import exports
from annotation.exports import jsonl_chunks, write_export
from annotation.models import (
    Dataset,
    DatasetComparison,
    Item,
    Prompt,
    Response,
    Role,
)
from annotation.pseudonyms import annotator_pseudonym
from annotation.services.campaigns import campaign_create, membership_add
from tests.annotation.support import build, judge_all, prefer

datasets = pytest.importorskip("datasets")
pq = pytest.importorskip("pyarrow.parquet")

pytestmark = pytest.mark.django_db
ASSISTANT = {"role", "content"}


@pytest.fixture
def ready(make_campaign, manager, annotator, annotator2, researcher) -> Dataset:
    """5 pairwise items judged twice (model-x preferred), with one rewrite and one tie-free consensus."""
    campaign = make_campaign(items=5, overlap=2, annotators=[annotator, annotator2], allow_editing=True)
    membership_add(campaign=campaign, user=researcher, role=Role.RESEARCHER)

    def with_edit(item_id, by_model):
        answer = prefer("model-x", strength=2)(item_id, by_model)
        if Item.objects.get(pk=item_id).prompt.external_id == "p0":
            answer["edited_response"] = "A better answer."
        return answer

    judge_all(campaign, annotator, with_edit)
    judge_all(campaign, annotator2, prefer("model-x"))
    return build(campaign, manager)


def _load(path, fmt):
    return datasets.load_dataset("json" if fmt == "jsonl" else "parquet", data_files=str(path), split="train")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_preference_export_loads_in_trl_shape(ready, tmp_path, fmt):
    """Conversational, explicit prompt: prompt messages, one assistant message each side, a float margin."""
    ds = _load(write_export(ready, "preference", fmt, tmp_path / f"pref.{fmt}"), fmt)
    # 5 decided comparisons, then the rewrite as an extra preferred response over the reply it rewrote
    assert ds.column_names == ["prompt", "chosen", "rejected", "margin"] and len(ds) == 6
    extra = ds[5]
    assert extra["chosen"][0]["content"] == "A better answer." and extra["margin"] == 0.0
    assert extra["rejected"][0]["content"].startswith("Answer one to 0") and extra["prompt"] == ds[0]["prompt"]
    row = ds[0]
    assert row["prompt"][0]["role"] == "user" and row["prompt"][-1]["role"] != "assistant"
    assert [m["role"] for m in row["chosen"]] == ["assistant"] and set(row["chosen"][0]) == ASSISTANT
    assert row["chosen"][0]["content"].startswith("Answer one") and row["rejected"][0]["content"].startswith("Answer two")
    assert row["margin"] == pytest.approx(1.5)  # strengths 2 and 1 agree


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_implicit_export_has_whole_conversations(ready, tmp_path, fmt):
    ds = _load(write_export(ready, "implicit", fmt, tmp_path / f"implicit.{fmt}"), fmt)
    assert ds.column_names == ["chosen", "rejected", "margin"]
    row = ds[0]
    assert [m["role"] for m in row["chosen"]] == ["user", "assistant"]
    assert row["chosen"][:-1] == row["rejected"][:-1] and row["chosen"][-1] != row["rejected"][-1]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_kto_export_has_one_row_per_chosen_and_rejected(ready, tmp_path, fmt):
    ds = _load(write_export(ready, "kto", fmt, tmp_path / f"kto.{fmt}"), fmt)
    assert ds.column_names == ["prompt", "completion", "label"] and len(ds) == 10
    assert sorted(ds["label"]) == [False] * 5 + [True] * 5
    assert all(r["completion"][0]["content"].startswith("Answer one") == r["label"] for r in ds)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_prompt_and_sft_exports(ready, tmp_path, fmt):
    prompts = _load(write_export(ready, "prompt", fmt, tmp_path / f"prompt.{fmt}"), fmt)
    assert prompts.column_names == ["prompt"] and len(prompts) == 5
    sft = _load(write_export(ready, "sft", fmt, tmp_path / f"sft.{fmt}"), fmt)
    assert len(sft) == 1 and sft[0]["messages"][-1] == {"role": "assistant", "content": "A better answer."}
    assert sft[0]["messages"][0] == {"role": "user", "content": "Question 0?"}


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_raw_judgments_export_is_pseudonymous(ready, tmp_path, annotator, fmt):
    ds = _load(write_export(ready, "judgments", fmt, tmp_path / f"judgments.{fmt}"), fmt)
    assert len(ds) == 10
    assert {r["annotator"] for r in ds} == {annotator_pseudonym(annotator.pk), annotator_pseudonym(annotator.pk + 1)}
    row = next(r for r in ds if r["edited_response"])
    answer = row["answer"] if fmt == "jsonl" else json.loads(row["answer"])
    assert "edited_response_id" in answer and row["campaign_version"] == 1 and row["time_taken_ms"] == 1200
    assert len(row["display_order"]) == 2 and sorted(row["display_models"]) == ["model-x", "model-y"]
    assert "ann" not in {r["annotator"] for r in ds}


def test_pseudonyms_are_stable_and_keyed(settings):
    first = annotator_pseudonym(7)
    assert first == annotator_pseudonym(7) and first != annotator_pseudonym(8)
    settings.SECRET_KEY = "another-installation"
    assert annotator_pseudonym(7) != first


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_leaderboard_and_comparisons_exports(ready, tmp_path, fmt):
    board = _load(write_export(ready, "leaderboard", fmt, tmp_path / f"board.{fmt}"), fmt)
    assert board.column_names == ["model", "score", "ci_low", "ci_high", "rank", "n"]
    assert board[0]["model"] == "model-x" and board[0]["ci_low"] <= board[0]["score"] <= board[0]["ci_high"]
    rows = _load(write_export(ready, "comparisons", fmt, tmp_path / f"rows.{fmt}"), fmt)
    assert len(rows) == 5 and set(rows["outcome"]) == {"chosen"} and rows[0]["n_judgments"] == 2


def test_ties_stay_out_of_the_preference_files(make_campaign, manager, annotator, tmp_path):
    campaign = make_campaign(items=3, annotators=[annotator])
    judge_all(campaign, annotator, lambda item_id, by_model: (
        {"outcome": "tie"} if Item.objects.get(pk=item_id).prompt.external_id == "p0"
        else prefer("model-y")(item_id, by_model)))
    ds = build(campaign, manager)
    assert ds.comparison_count == 3
    pref = [json.loads(line) for line in write_export(ds, "preference", "jsonl", tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(pref) == 2
    assert len(list(exports.export_rows(ds, "comparisons"))) == 3
    assert len(list(exports.export_rows(ds, "prompt"))) == 3


def test_unknown_kind_and_format_are_named():
    from annotation.errors import ApplicationError

    with pytest.raises(ApplicationError, match="kind: must be one of preference, implicit"):
        exports.export_rows(None, "csv")
    with pytest.raises(ApplicationError, match="format: must be one of jsonl, parquet"):
        write_export(None, "preference", "csv", "/tmp/x")


# --- the HTTP downloads ---------------------------------------------------------------------------------


def test_download_streams_jsonl_and_parquet(ready, client_for, researcher):
    client = client_for(researcher)
    url = reverse("api:dataset_export", kwargs={"dataset_id": ready.pk, "kind": "preference"})
    res = client.get(url, {"format": "jsonl"})
    assert res.status_code == 200 and res.streaming and res["Content-Type"] == "application/jsonl"
    assert res["Content-Disposition"] == 'attachment; filename="test-campaign-v1-preference.jsonl"'
    lines = b"".join(res.streaming_content).decode().splitlines()
    assert len(lines) == 6 and set(json.loads(lines[0])) == {"prompt", "chosen", "rejected", "margin"}
    res = client.get(url, {"format": "parquet"})
    assert res.status_code == 200 and res["Content-Type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(b"".join(res.streaming_content)))
    assert table.num_rows == 6 and table.column_names == ["prompt", "chosen", "rejected", "margin"]


def test_download_errors(ready, client_for, researcher, annotator, outsider, manager):
    url = reverse("api:dataset_export", kwargs={"dataset_id": ready.pk, "kind": "preference"})
    res = client_for(researcher).get(url, {"format": "csv"})
    assert res.status_code == 400 and res.json()["message"] == "format: must be one of jsonl, parquet"
    bad_kind = reverse("api:dataset_export", kwargs={"dataset_id": ready.pk, "kind": "csv"})
    res = client_for(researcher).get(bad_kind)
    assert res.status_code == 404 and res.json()["message"].startswith("No export called 'csv'; use one of preference")
    assert client_for(annotator).get(url).status_code == 403
    assert client_for(outsider).get(url).status_code == 404
    building = Dataset.objects.create(campaign=ready.campaign, version=9, method="majority", campaign_version=1,
                                      created_by=manager)
    res = client_for(researcher).get(reverse("api:dataset_export", kwargs={"dataset_id": building.pk,
                                                                          "kind": "preference"}))
    assert res.status_code == 409 and res.json()["message"] == "Dataset v9 is building; try again when it is ready."


def test_dataset_card_is_markdown(ready, client_for, researcher):
    res = client_for(researcher).get(reverse("api:dataset_card", kwargs={"dataset_id": ready.pk}))
    assert res.status_code == 200 and res["Content-Type"] == "text/markdown; charset=utf-8"
    card = res.content.decode()
    for needle in ("# Test campaign — dataset v1", ready.content_hash, "Majority vote", "`bootstrap_rounds`",
                   "| 5 | 5 | 10 | 2 |", "Krippendorff's alpha", "model-x", "## License", "**preference**",
                   "**kto**", 'load_dataset("json"'):
        assert needle in card, needle


def test_campaign_judgments_export(ready, client_for, researcher, manager):
    url = reverse("api:campaign_judgments_export", kwargs={"campaign_id": ready.campaign_id})
    res = client_for(researcher).get(url, {"format": "jsonl"})
    assert res.status_code == 200
    rows = [json.loads(x) for x in b"".join(res.streaming_content).decode().splitlines()]
    assert len(rows) == 10 and all(r["annotator"].startswith("a_") for r in rows)
    assert {"display_order", "time_taken_ms", "campaign_version", "outcome", "answer"} <= set(rows[0])


# --- constant memory ------------------------------------------------------------------------------------


def _big_dataset(manager, n: int, text_bytes: int) -> Dataset:
    campaign = campaign_create(created_by=manager, name="big")
    prompt = Prompt.objects.create(campaign=campaign, messages=[{"role": "user", "content": "Q"}])
    a = Response.objects.create(prompt=prompt, content="a", model_name="m-a")
    b = Response.objects.create(prompt=prompt, content="b", model_name="m-b")
    items = Item.objects.bulk_create(Item(campaign=campaign, prompt=prompt, target=1) for _ in range(n))
    ds = Dataset.objects.create(campaign=campaign, version=1, method="majority", campaign_version=1,
                                created_by=manager, status="ready", content_hash="0" * 64)
    filler = "x" * text_bytes
    DatasetComparison.objects.bulk_create(
        (DatasetComparison(dataset=ds, position=k, item=item, prompt=[{"role": "user", "content": f"Q{k} {filler}"}],
                           chosen_response=a, chosen_text=f"chosen {k} {filler}", rejected_response=b,
                           rejected_text=f"rejected {k} {filler}", outcome="chosen", margin=1.0, confidence=1.0,
                           n_judgments=1)
         for k, item in enumerate(items)),
        batch_size=2000,
    )
    return ds


def test_jsonl_export_of_20k_rows_streams_in_constant_memory(manager):
    """The generator never holds the whole output: peak traced memory stays far below its size."""
    ds = _big_dataset(manager, 20_000, text_bytes=300)
    tracemalloc.start()
    try:
        total = rows = 0
        for chunk in jsonl_chunks(exports.export_rows(ds, "preference")):
            total += len(chunk)
            rows += chunk.count(b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == 20_000 and total > 20_000 * 900
    assert peak < total / 10, f"peak {peak} bytes for {total} bytes of output"


def test_parquet_export_of_20k_rows_is_written_in_row_groups(manager, tmp_path):
    ds = _big_dataset(manager, 20_000, text_bytes=20)
    path = write_export(ds, "preference", "parquet", tmp_path / "big.parquet")
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == 20_000 and meta.num_row_groups == 4


def test_asgi_body_is_pulled_lazily():
    """Under ASGI the body is an async iterator that takes a few chunks at a time from the generator."""
    pulled = []

    def gen():
        for k in range(100):
            pulled.append(k)
            yield f"{k}\n".encode()

    async def first_two():
        out = []
        agen = exports._async_chunks(gen())
        async for chunk in agen:
            out.append(chunk)
            if len(out) == 2:
                break
        await agen.aclose()
        return out

    assert asyncio.run(first_two()) == [b"0\n", b"1\n"]
    assert len(pulled) <= exports._ASGI_BATCH


def test_asgi_requests_get_an_async_body(rf):
    from django.core.handlers.asgi import ASGIRequest

    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": []}
    request = ASGIRequest(scope, io.BytesIO())
    res = exports.stream_response(request, iter([b"x"]), content_type="application/jsonl", filename="x.jsonl")
    assert res.is_async
    assert not exports.stream_response(rf.get("/"), iter([b"x"]), content_type="a/b", filename="x").is_async


def test_asgi_download_streams_from_the_database(ready, researcher):
    """Served over ASGI (as in production), the JSONL body is an async stream read in the request's thread."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    client = AsyncClient()
    client.force_login(researcher)
    url = reverse("api:dataset_export", kwargs={"dataset_id": ready.pk, "kind": "kto"})

    async def fetch():
        res = await client.get(url, {"format": "jsonl"})
        return res, b"".join([chunk async for chunk in res.streaming_content])

    res, body = async_to_sync(fetch)()
    assert res.status_code == 200 and res.is_async
    assert len(body.decode().splitlines()) == 10
    res, body = async_to_sync(_get_parquet)(client, url)
    assert res.status_code == 200 and res.is_async and pq.read_table(io.BytesIO(body)).num_rows == 10
    assert "Content-Length" not in res  # streamed as it is written


def test_parquet_streams_row_group_by_row_group():
    """The first bytes leave after one row group is written, not after the whole file."""
    consumed = 0

    def rows():
        nonlocal consumed
        for i in range(2500):
            consumed += 1
            yield {"model": f"m{i}", "score": float(i), "ci_low": 0.0, "ci_high": 1.0, "rank": 1, "n": i}

    chunks = exports.parquet_chunks(rows(), exports.KINDS["leaderboard"], row_group=1000)
    first = next(chunks)
    assert first.startswith(b"PAR1") and consumed <= 1001
    body = first + b"".join(chunks)
    assert consumed == 2500
    table = pq.read_table(io.BytesIO(body))
    assert table.num_rows == 2500 and pq.ParquetFile(io.BytesIO(body)).metadata.num_row_groups == 3


async def _get_parquet(client, url):
    res = await client.get(url, {"format": "parquet"})
    return res, b"".join([chunk async for chunk in res.streaming_content])


# --- held back: undecided pairs and flagged items -----------------------------------------------------


@pytest.fixture
def held(make_campaign, manager, annotator, annotator2, researcher) -> Dataset:
    """6 items at overlap 2: 2 agreed (model-x), 2 split 1–1, 2 agreed but flagged unsafe by one annotator
    (one of them also rewritten)."""
    campaign = make_campaign(items=6, overlap=2, annotators=[annotator, annotator2], allow_editing=True)
    membership_add(campaign=campaign, user=researcher, role=Role.RESEARCHER)
    ids = sorted(campaign.items.values_list("pk", flat=True))
    split, flagged = set(ids[2:4]), set(ids[4:])

    def first(item_id, by_model):
        answer = prefer("model-x", strength=2)(item_id, by_model)
        if item_id in flagged:
            answer["flags"] = ["unsafe"]
            answer["edited_response"] = "A rewrite of an unsafe item."
        return answer

    judge_all(campaign, annotator, first)
    judge_all(campaign, annotator2, lambda i, m: prefer("model-y" if i in split else "model-x")(i, m))
    ds = build(campaign, manager, method="reliability_weighted")
    ds.split_ids, ds.flagged_ids, ds.agreed_ids = split, flagged, set(ids[:2])
    return ds


def test_training_exports_skip_undecided_pairs_and_flagged_items(held, tmp_path):
    """Preference, implicit and KTO rows come from the 2 agreed, unflagged items only; prompt-only and SFT
    leave flagged items out; the comparisons export keeps every row, marked."""
    kept = {Item.objects.get(pk=i).prompt.messages[0]["content"] for i in held.agreed_ids}
    for kind in ("preference", "implicit"):
        rows = list(exports.export_rows(held, kind))
        assert len(rows) == 2, kind
    assert {r["prompt"][0]["content"] for r in exports.export_rows(held, "preference")} == kept
    assert {r["prompt"][0]["content"] for r in exports.export_rows(held, "kto")} == kept
    assert len(list(exports.export_rows(held, "prompt"))) == 4  # the 2 agreed and the 2 split items
    assert list(exports.export_rows(held, "sft")) == []
    outcomes = {r["item_id"]: r["outcome"] for r in exports.export_rows(held, "comparisons")}
    assert len(outcomes) == 6 and {outcomes[i] for i in held.split_ids} <= {"tie", "undecided"}
    assert {outcomes[i] for i in held.flagged_ids} == {"chosen"}


def test_keep_flagged_puts_flagged_items_back(held, manager):
    ds = build(held.campaign, manager, method="reliability_weighted", keep_flagged=True)
    assert len(list(exports.export_rows(ds, "preference"))) == 4 + 2  # 4 decided pairs + 2 rewrites
    assert len(list(exports.export_rows(ds, "sft"))) == 2


def test_card_counts_what_was_held_back_and_why(held):
    """The card's held-back section names each reason with its count and threshold, and lists the flagged items."""
    card = exports.dataset_card(held)
    stats = held.stats
    assert "## Held back from training" in card
    held_back = stats["held_back"]
    assert held_back["tie"] + held_back["too_few_judgments"] + held_back["below_confidence"] == 2
    assert f"fewer than `min_judgments` = 2 agree with the winner | {held_back['too_few_judgments']} |" in card
    assert f"under `min_confidence` = 0.6 | {held_back['below_confidence']} |" in card
    assert "Flagged items (unsafe, private data or broken, by at least 1 annotator(s)): 2, left out of every " \
           "training export with their 2 decided pair(s)" in card
    for item_id in held.flagged_ids:
        assert f"| {item_id} | unsafe (1) | 1 |" in card
