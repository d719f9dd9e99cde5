"""Helpers shared by the annotation tests: judge a campaign through the serving services, build a dataset."""

from annotation.models import Dataset, ItemResponse
from annotation.services.datasets import dataset_build, dataset_create
from annotation.services.serving import assignment_lease_next, judgment_submit


def judge_all(campaign, annotator, decide) -> int:
    """Lease and judge every item the annotator is served; `decide(item_id, {model: response_id})` -> answer."""
    n = 0
    while (a := assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)) is not None:
        by_model = {
            r.response.model_name: r.response_id
            for r in ItemResponse.objects.filter(item_id=a.item_id).select_related("response")
        }
        judgment_submit(assignment_id=a.pk, annotator=annotator, answer=decide(a.item_id, by_model))
        n += 1
    return n


def prefer(model, strength=1):
    def decide(item_id, by_model):
        return {"outcome": "preferred", "preferred_response_id": by_model[model], "strength": strength,
                "time_taken_ms": 1200}

    return decide


def build(campaign, manager, method="majority", **params) -> Dataset:
    params.setdefault("bootstrap_rounds", 50)
    dataset = dataset_create(campaign=campaign, method=method, params=params, created_by=manager)
    return dataset_build(dataset_id=dataset.pk)
