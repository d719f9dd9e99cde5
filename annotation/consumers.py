"""Websocket consumers. Live pages only read: every write goes through the HTTP API and services.

`CampaignProgressConsumer` pushes a campaign's live counts to its managers and researchers.
Services publish `campaign.changed` (see annotation.events) after each commit; the consumer
coalesces bursts into one recount per `REFRESH_DELAY` seconds, so a dashboard costs at most a
few queries a second however fast judgments arrive, and still shows a change well within a second.
"""

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from annotation import events
from annotation.errors import ForbiddenError, NotFoundError
from annotation.models import Role
from annotation.selectors import campaign_get_for_user, campaign_live_counts

logger = logging.getLogger(__name__)

# Close code for "not allowed": the socket is accepted and then closed with it, so that the page
# can tell a refusal (stop, ask for a reload) from a dropped connection (reconnect).
CLOSE_FORBIDDEN = 4403


def campaign_progress_path(campaign_id: int) -> str:
    """Return the websocket path of a campaign's live progress (see config.routing)."""
    return f"/ws/campaigns/{int(campaign_id)}/progress/"


@database_sync_to_async
def _authorize(user, campaign_id: int) -> bool:
    try:
        campaign_get_for_user(user=user, campaign_id=campaign_id, roles=[Role.MANAGER, Role.RESEARCHER])
    except (NotFoundError, ForbiddenError):
        return False
    return True


@database_sync_to_async
def _counts(campaign_id: int) -> dict[str, int]:
    return campaign_live_counts(campaign_id=campaign_id)


class CampaignProgressConsumer(AsyncJsonWebsocketConsumer):
    """Sends `{"type": "progress", "counts": {...}}` on connect and after every change."""

    # Wait this long after a change before recounting, so a burst of changes costs one query.
    REFRESH_DELAY = 0.15
    # Recount this often without changes too: "judgments per minute" is a sliding window, and a
    # change made in another process (e.g. an expired lease) is not seen on the in-memory layer.
    TICK_SECONDS = 20.0

    campaign_id: int | None = None
    group: str | None = None

    async def connect(self) -> None:
        self._dirty = False
        self._refresh_task: asyncio.Task | None = None
        self._tick_task: asyncio.Task | None = None
        campaign_id = self.scope["url_route"]["kwargs"]["campaign_id"]
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated or not await _authorize(user, campaign_id):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.campaign_id = campaign_id
        # Join before counting, so a change made while the snapshot is computed is not lost.
        self.group = events.campaign_group(campaign_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self._send_snapshot()
        self._tick_task = asyncio.create_task(self._tick())

    async def disconnect(self, code: int) -> None:
        for task in (getattr(self, "_refresh_task", None), getattr(self, "_tick_task", None)):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self._refresh_task = self._tick_task = None
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = None

    async def receive_json(self, content, **kwargs) -> None:
        """The page sends nothing the server acts on; anything it sends is ignored."""

    async def campaign_changed(self, event: dict) -> None:
        """Group message from annotation.events: schedule one recount unless one is pending."""
        self._schedule()

    def _schedule(self) -> None:
        if self.campaign_id is None:
            return
        self._dirty = True
        if self._refresh_task is None:
            self._refresh_task = asyncio.create_task(self._refresh_loop())

    async def _refresh_loop(self) -> None:
        # One loop per consumer at a time: recounts never overlap, so snapshots arrive in order.
        # A change that arrives while counting sets `_dirty` again and earns one more recount.
        try:
            while self._dirty:
                await asyncio.sleep(self.REFRESH_DELAY)
                self._dirty = False
                await self._send_snapshot()
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed tick must not kill the socket; the next change retries
            logger.warning("live progress refresh failed for campaign %s", self.campaign_id, exc_info=True)
        finally:
            self._refresh_task = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.TICK_SECONDS)
            self._schedule()

    async def _send_snapshot(self) -> None:
        counts = await _counts(self.campaign_id)
        await self.send_json({"type": "progress", "counts": counts})
