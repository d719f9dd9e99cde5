"""Websocket consumers. Live pages only read: every write goes through the HTTP API and services.

Services publish `campaign.changed` (see annotation.events) to the campaign's group after each
commit. Each consumer coalesces a burst of changes into one read, so a live page costs at most
a few queries a second however fast judgments arrive, and still shows a change within a second.

- `CampaignProgressConsumer` pushes a campaign's live counts to its managers and researchers.
- `CampaignDashboardConsumer` pushes the whole dashboard (annotation.dashboard) to its managers:
  at most one payload per `MIN_INTERVAL` seconds, always ending with the latest state.
"""

import asyncio
import logging
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from annotation import events
from annotation.dashboard import campaign_dashboard
from annotation.errors import ForbiddenError, NotFoundError
from annotation.models import Campaign, Role
from annotation.selectors import campaign_get_for_user, campaign_live_counts

logger = logging.getLogger(__name__)

# Close code for "not allowed": the socket is accepted and then closed with it, so that the page
# can tell a refusal (stop, ask for a reload) from a dropped connection (reconnect).
CLOSE_FORBIDDEN = 4403


def campaign_progress_path(campaign_id: int) -> str:
    """Return the websocket path of a campaign's live progress (see config.routing)."""
    return f"/ws/campaigns/{int(campaign_id)}/progress/"


def campaign_dashboard_path(campaign_id: int) -> str:
    """Return the websocket path of a campaign's live dashboard (see config.routing)."""
    return f"/ws/campaigns/{int(campaign_id)}/dashboard/"


@database_sync_to_async
def _authorize(user, campaign_id: int, roles: tuple[str, ...]) -> bool:
    try:
        campaign_get_for_user(user=user, campaign_id=campaign_id, roles=roles)
    except (NotFoundError, ForbiddenError):
        return False
    return True


@database_sync_to_async
def _counts(campaign_id: int) -> dict[str, int]:
    return campaign_live_counts(campaign_id=campaign_id)


@database_sync_to_async
def _dashboard(campaign_id: int) -> dict | None:
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    return None if campaign is None else campaign_dashboard(campaign=campaign)


class _CampaignLiveConsumer(AsyncJsonWebsocketConsumer):
    """Authenticate, join the campaign's group, send a snapshot on connect and after changes.

    Subclasses name the campaign roles allowed in and send their snapshot in `_send_snapshot`.
    """

    ROLES: tuple[str, ...] = ()
    # Wait this long after a change before reading, so a burst of changes costs one read.
    REFRESH_DELAY = 0.15
    # Never send two snapshots closer together than this (0: only REFRESH_DELAY paces them).
    MIN_INTERVAL = 0.0
    # Read this often without changes too: "per minute" figures are sliding windows, and a
    # change made in another process (e.g. an expired lease) is not seen on the in-memory layer.
    TICK_SECONDS = 20.0

    campaign_id: int | None = None
    group: str | None = None

    async def connect(self) -> None:
        self._dirty = False
        self._last_sent = float("-inf")
        self._refresh_task: asyncio.Task | None = None
        self._tick_task: asyncio.Task | None = None
        self._later_task: asyncio.Task | None = None
        campaign_id = self.scope["url_route"]["kwargs"]["campaign_id"]
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated or not await _authorize(user, campaign_id, self.ROLES):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.campaign_id = campaign_id
        # Join before reading, so a change made while the snapshot is computed is not lost.
        self.group = events.campaign_group(campaign_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self._send_snapshot()
        self._last_sent = time.monotonic()
        self._tick_task = asyncio.create_task(self._tick())

    async def disconnect(self, code: int) -> None:
        for name in ("_refresh_task", "_tick_task", "_later_task"):
            task = getattr(self, name, None)
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self._refresh_task = self._tick_task = self._later_task = None
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = None

    async def receive_json(self, content, **kwargs) -> None:
        """The page sends nothing the server acts on; anything it sends is ignored."""

    async def campaign_changed(self, event: dict) -> None:
        """Group message from annotation.events: schedule one read unless one is pending."""
        self._schedule()

    def _schedule(self) -> None:
        if self.campaign_id is None:
            return
        self._dirty = True
        if self._refresh_task is None:
            self._refresh_task = asyncio.create_task(self._refresh_loop())

    async def _refresh_loop(self) -> None:
        # One loop per consumer at a time: reads never overlap, so snapshots arrive in order.
        # A change that arrives while reading sets `_dirty` again and earns one more read.
        try:
            while self._dirty:
                wait = max(self.REFRESH_DELAY, self._last_sent + self.MIN_INTERVAL - time.monotonic())
                await asyncio.sleep(wait)
                self._dirty = False
                await self._send_snapshot()
                self._last_sent = time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed read must not kill the socket; the next change retries
            logger.warning("live refresh failed for campaign %s", self.campaign_id, exc_info=True)
        finally:
            self._refresh_task = None

    def _schedule_in(self, seconds: float) -> None:
        """Read again after `seconds` (one such wait at a time), changes or not."""
        if self._later_task is None:
            self._later_task = asyncio.create_task(self._later(seconds))

    async def _later(self, seconds: float) -> None:
        try:
            await asyncio.sleep(seconds)
        finally:
            self._later_task = None
        self._schedule()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.TICK_SECONDS)
            self._schedule()

    async def _send_snapshot(self) -> None:
        raise NotImplementedError


class CampaignProgressConsumer(_CampaignLiveConsumer):
    """Sends `{"type": "progress", "counts": {...}}` on connect and after every change."""

    ROLES = (Role.MANAGER, Role.RESEARCHER)

    async def _send_snapshot(self) -> None:
        counts = await _counts(self.campaign_id)
        await self.send_json({"type": "progress", "counts": counts})


class CampaignDashboardConsumer(_CampaignLiveConsumer):
    """Sends `{"type": "dashboard", "dashboard": {...}}` on connect and after changes; managers only.

    A burst of judgments earns at most one payload per `MIN_INTERVAL`; the last change of a burst
    is always followed by a payload showing it, within `MIN_INTERVAL` plus the time to read it.
    On a large campaign whose quality figures came back stale, one more read follows when they
    are due to be recomputed.
    """

    ROLES = (Role.MANAGER,)
    REFRESH_DELAY = 0.1
    MIN_INTERVAL = 0.5
    TICK_SECONDS = 30.0

    async def _send_snapshot(self) -> None:
        payload = await _dashboard(self.campaign_id)
        if payload is None:  # the campaign was deleted under the page
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.send_json({"type": "dashboard", "dashboard": payload})
        as_of = payload["quality_as_of"]
        if as_of["stale"]:  # a large campaign: its quality figures catch up when they are recomputed
            self._schedule_in(as_of["refresh_in"])
