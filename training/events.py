"""The only place training publishes to the channel layer. Events are sent after commit."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def run_group(run_id: int) -> str:
    """Return the channel-layer group of one run's live page."""
    return f"training-run-{int(run_id)}"


def _send(group: str, message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # a page that misses one tick catches up at its next poll; the run is stored
        logger.warning("could not publish %s to %s", message.get("type"), group, exc_info=True)


def run_changed(*, run_id: int) -> None:
    """Tell live pages that the run's progress, metrics, log or status changed, once committed."""
    transaction.on_commit(lambda: _send(run_group(run_id), {"type": "run.changed"}))
