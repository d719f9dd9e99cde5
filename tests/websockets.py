"""Websocket test helpers: a communicator that needs no daphne, a thread to run async code in, and
clients for the campaign progress socket. The channel-layer fixtures are in tests/conftest.py.

The async code runs under `async_to_sync` inside ordinary sync tests (no pytest-asyncio needed),
in a thread of its own (`run_async`): once a browser test has started Playwright's sync API, this
thread has an event loop, where async_to_sync refuses to run.
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.db import connections
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.http.consumers import campaign_progress_path

ORIGIN = (b"origin", b"http://127.0.0.1")
REDIS_HOST = "redis://127.0.0.1:6379/0"
IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
REDIS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # A prefix of our own: flushing between tests touches nothing else on this Redis.
        "CONFIG": {"hosts": [REDIS_HOST], "prefix": f"arbiter-test-{os.getpid()}"},
    }
}


class WebsocketCommunicator(ApplicationCommunicator):
    """The part of channels.testing.WebsocketCommunicator these tests use.

    channels.testing cannot be imported here: its package imports daphne, which Arbiter does
    not install (uvicorn serves ASGI).
    """

    def __init__(self, application, path: str, headers: list[tuple[bytes, bytes]] | None = None):
        scope = {"type": "websocket", "path": path, "query_string": b"", "headers": headers or [], "subprotocols": []}
        super().__init__(application, scope)

    async def connect(self, timeout: float = 2) -> tuple[bool, object]:
        """Return (True, subprotocol) when accepted, (False, close code) when refused."""
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        assert response["type"] == "websocket.accept", response
        return True, response.get("subprotocol")

    async def receive_json_from(self, timeout: float = 1) -> dict:
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


def run_async(fn, *args):
    """Run `async_to_sync(fn)(*args)` in a fresh thread and return its result (or raise its error)."""

    def call():
        try:
            return async_to_sync(fn)(*args)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result(timeout=60)


def redis_reachable() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_HOST, socket_connect_timeout=0.5).ping())
    except Exception:
        return False


def communicator(user, campaign_id: int, *, origin: tuple[bytes, bytes] | None = ORIGIN) -> WebsocketCommunicator:
    """A websocket client against the project's ASGI application, logged in as `user` (or not)."""
    from config.asgi import (
        application,  # the ASGI app loads on first use, not when conftest imports this
    )

    headers = [origin] if origin else []
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return WebsocketCommunicator(application, campaign_progress_path(campaign_id), headers=headers)


async def snapshot(comm: WebsocketCommunicator, timeout: float = 2) -> dict:
    message = await comm.receive_json_from(timeout=timeout)
    assert message["type"] == "progress"
    return message["counts"]


def lease(campaign, annotator) -> dict:
    """The annotator takes the next item through the API (which calls the serving service)."""
    client = APIClient()
    client.force_authenticate(annotator)
    res = client.post(reverse("api:assignment_next", kwargs={"campaign_id": campaign.pk}), {}, format="json")
    assert res.status_code == 200, res.content
    return res.json()["assignment"]


def submit(assignment: dict, annotator) -> None:
    client = APIClient()
    client.force_authenticate(annotator)
    body = {"outcome": "preferred", "preferred_response_id": assignment["item"]["responses"][0]["id"], "strength": 2}
    res = client.post(reverse("api:judgment_submit", kwargs={"assignment_id": assignment["id"]}), body, format="json")
    assert res.status_code == 201, res.content
