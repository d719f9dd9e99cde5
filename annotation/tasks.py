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

