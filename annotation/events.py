"""The only place that publishes to the channel layer. Events are sent after commit."""

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def campaign_group(campaign_id: int) -> str:
    return f"campaign-{campaign_id}"


_held = threading.local()


@contextmanager
def held() -> Iterator[list[tuple[str, dict]]]:
    """Collect this thread's events instead of sending them; the caller sends them itself.

    The hot path (annotation.http.hotpath) runs services in its own threads and sends their events
    from the server's event loop, where the in-memory layer's queues live.
    """
    outbox: list[tuple[str, dict]] = []
    _held.outbox = outbox
    try:
        yield outbox
    finally:
        _held.outbox = None


async def send_held(outbox: list[tuple[str, dict]]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for group, message in outbox:
        try:
            await layer.group_send(group, message)
        except Exception:  # as in _send: the judgment is stored; a dashboard misses one tick
            logger.warning("could not publish %s to %s", message.get("type"), group, exc_info=True)


def _send(group: str, message: dict) -> None:
    outbox = getattr(_held, "outbox", None)
    if outbox is not None:
        outbox.append((group, message))
        return
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # a dashboard that misses one tick is fine; the judgment is stored
        logger.warning("could not publish %s to %s", message.get("type"), group, exc_info=True)


def campaign_changed(*, campaign_id: int) -> None:
    """Tell live pages that the campaign changed, once the transaction commits.

    Both the progress and the dashboard consumers (annotation.http.consumers) listen on the campaign's
    group; each reads what it shows again, so the event carries nothing but its type. Any write
    that changes what a manager sees (a judgment, a lease, a member paused or excluded) sends it.
    """
    transaction.on_commit(lambda: _send(campaign_group(campaign_id), {"type": "campaign.changed"}))
