"""POST /api/v1/campaigns/<id>/rounds/: queued after commit, then generated, scored and opened by the worker."""

import pytest
from django.urls import reverse

from annotation.models import AuditEntry, Campaign, Item, Response
from training.rounds.services import win_probability


@pytest.mark.training
def test_the_api_queues_a_round_that_the_worker_opens(
    make_campaign, manager, annotator, tiny_root, settings, eager, client_for, django_capture_on_commit_callbacks
):
    """POST /rounds/ answers 202; after commit the worker samples, scores and opens the round."""
    settings.ARBITER_MODEL_ROOTS = [tiny_root]
    source = make_campaign(items=3, annotators=[annotator])
    url = reverse("api:campaign_round_create", kwargs={"campaign_id": source.pk})
    body = {
        "checkpoints": [str(tiny_root / "tiny-causal-lm")], "k": 3, "max_new_tokens": 6, "temperature": 1.0,
        "selection": "uncertain", "reward_model": str(tiny_root / "tiny-reward-base"), "seed": 3, "activate": True,
    }
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client_for(manager).post(url, body, format="json")
        assert response.status_code == 202, response.content
        assert not Campaign.objects.filter(parent=source).exists()  # nothing before the commit
    assert [c.__qualname__.split(".")[0] for c in callbacks].count("round_queue") == 1
    data = response.json()
    assert data["status"] == "queued" and data["checkpoints"] == [
        {"label": "tiny-causal-lm", "path": str((tiny_root / "tiny-causal-lm").resolve())}
    ]

    new = Campaign.objects.get(parent=source)
    assert new.status == Campaign.Status.ACTIVE and new.item_count == 3
    responses = list(Response.objects.filter(prompt__campaign=new))
    assert len(responses) == 9 and {r.model_name for r in responses} == {"tiny-causal-lm"}
    assert all({"reward", "tokens", "finished", "checkpoint"} <= set(r.metadata) for r in responses)
    for item in Item.objects.filter(campaign=new):
        chosen = {ir.response_id for ir in item.item_responses.all()}
        candidates = [r for r in responses if r.prompt_id == item.prompt_id]
        distinct = {r.content: r for r in reversed(candidates)}.values()
        best = min(
            ((a, b) for a in distinct for b in distinct if a.pk < b.pk),
            key=lambda ab: abs(win_probability(ab[0].metadata["reward"], ab[1].metadata["reward"]) - 0.5),
        )
        assert chosen == {best[0].pk, best[1].pk}
    opened = AuditEntry.objects.get(campaign=source, action="campaign.round_open")
    assert opened.after["request"] == data["request"] and opened.after["generation"]["tiny-causal-lm"]["samples"] == 9
