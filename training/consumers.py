"""Websocket of one training run's page: its progress, new metrics and log lines, live.

The worker publishes `run.changed` after each commit (`training.events`); with Redis that reaches
every web process at once. With the in-memory layer of the default set-up the worker is another
process and its events never arrive, so the consumer also looks at the database every
POLL_SECONDS (an indexed read of rows newer than the ones already sent) and the page is live
either way.
"""

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from annotation.errors import ForbiddenError, NotFoundError
from training import events

logger = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403  # as the campaign page: a refusal, not a dropped connection


def run_live_path(run_id: int) -> str:
    """Return the websocket path of a run's live page (see config.routing)."""
    return f"/ws/training/runs/{int(run_id)}/"


@database_sync_to_async
def _authorize(user, run_id: int) -> bool:
    from training.selectors import training_run_get_for_user

    try:
        training_run_get_for_user(user=user, run_id=run_id)
    except (NotFoundError, ForbiddenError):
        return False
    return True


@database_sync_to_async
def _state(run_id: int, metrics_after: int, log_after: int) -> dict:
    from training.api import run_state
    from training.models import TrainingRun

    return run_state(TrainingRun.objects.select_related("dataset", "campaign", "created_by").get(pk=run_id),
                     metrics_after=metrics_after, log_after=log_after)  # fmt: skip


class TrainingRunConsumer(AsyncJsonWebsocketConsumer):
    """Sends `{"type": "snapshot", run, metrics, log}` on connect, then `{"type": "update", ...}` with what is new."""

    REFRESH_DELAY = 0.1  # after an event, so a burst of events costs one read
    POLL_SECONDS = 1.0  # while the run may still change
    IDLE_POLL_SECONDS = 5.0  # once it has ended (it may be resumed)

    run_id: int | None = None
    group: str | None = None

    async def connect(self) -> None:
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._metrics_after = self._log_after = 0
        self._last_run: dict | None = None
        run_id = self.scope["url_route"]["kwargs"]["run_id"]
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated or not await _authorize(user, run_id):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.run_id = run_id
        self.group = events.run_group(run_id)
        await self.channel_layer.group_add(
            self.group, self.channel_name
        )  # before the snapshot: miss nothing
        await self._send_state("snapshot")
        self._loop_task = asyncio.create_task(self._loop())

    async def disconnect(self, code: int) -> None:
        task = getattr(self, "_loop_task", None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._loop_task = None
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = None

    async def receive_json(self, content, **kwargs) -> None:
        """The page sends nothing the server acts on: cancel and resume go through the HTTP API."""

    async def run_changed(self, event: dict) -> None:
        """Group message from training.events: read what is new soon."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            ended = (self._last_run or {}).get("status") in ("succeeded", "failed", "cancelled")
            try:
                await asyncio.wait_for(
                    self._wake.wait(), self.IDLE_POLL_SECONDS if ended else self.POLL_SECONDS
                )
                await asyncio.sleep(self.REFRESH_DELAY)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._send_state("update")
            except asyncio.CancelledError:
                raise
            except Exception:  # one failed read must not kill the socket; the next poll retries
                logger.warning(
                    "live refresh failed for training run %s", self.run_id, exc_info=True
                )

    async def _send_state(self, kind: str) -> None:
        state = await _state(self.run_id, self._metrics_after, self._log_after)
        if (
            kind == "update"
            and not state["metrics"]
            and not state["log"]
            and state["run"] == self._last_run
        ):
            return
        self._last_run = state["run"]
        if state["metrics"]:
            self._metrics_after = max(m["id"] for m in state["metrics"])
        if state["log"]:
            self._log_after = state["log"][-1]["id"]
        await self.send_json({"type": kind, **state})
