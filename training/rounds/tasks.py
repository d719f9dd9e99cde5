"""The worker's side of next-round generation: take ids, load the rows, call `round_generate`.

The task keeps the name `annotation.generate_round`, under which requests already waiting in a
broker were queued before it moved here; that name is also what keeps it on the default queue
(CELERY_TASK_ROUTES sends only `training.tasks.*` to the training queue).
"""

from celery import shared_task
from django.contrib.auth import get_user_model

from annotation.models import Campaign
from training.rounds.services import RoundRequest, round_generate


@shared_task(name="annotation.generate_round")
def generate_round(campaign_id: int, created_by_id: int, request: dict) -> int:
    """Generate replies for the campaign's prompts and open its next round (see `round_generate`).

    Return the new round's campaign id. A failure is recorded in the campaign's audit log and raised.
    """
    campaign = Campaign.objects.get(pk=campaign_id)
    created_by = get_user_model().objects.get(pk=created_by_id)
    result = round_generate(campaign=campaign, request=RoundRequest.from_dict(request), created_by=created_by)
    return result.campaign.pk
