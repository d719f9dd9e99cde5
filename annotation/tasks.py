from celery import shared_task

from annotation.models import Campaign
from annotation.services.serving import leases_expire


@shared_task(name="annotation.expire_leases")
def expire_leases() -> int:
    """Return every active campaign's expired leases to the pool; return how many."""
    total = 0
    for campaign_id in Campaign.objects.filter(status=Campaign.Status.ACTIVE).values_list("pk", flat=True):
        while expired := leases_expire(campaign_id=campaign_id):
            total += expired
    return total


@shared_task(name="annotation.build_dataset")
def build_dataset(dataset_id: int) -> str:
    """Build the dataset's snapshot (see `dataset_build`); return its final status."""
    from annotation.services.datasets import dataset_build

    return dataset_build(dataset_id=dataset_id).status


@shared_task(name="annotation.generate_round")
def generate_round(campaign_id: int, created_by_id: int, request: dict) -> int:
    """Generate replies for the campaign's prompts and open its next round (see `round_generate`).

    Return the new round's campaign id. A failure is recorded in the campaign's audit log and raised.
    """
    from django.contrib.auth import get_user_model

    from training.rounds.services import RoundRequest, round_generate

    campaign = Campaign.objects.get(pk=campaign_id)
    created_by = get_user_model().objects.get(pk=created_by_id)
    result = round_generate(campaign=campaign, request=RoundRequest.from_dict(request), created_by=created_by)
    return result.campaign.pk
