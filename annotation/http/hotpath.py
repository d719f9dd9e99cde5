"""The annotator's hot path: `next` and `submit` for token clients, from ASGI straight to the services.

Every annotator asks for the next item and submits a judgment for every item, so these two
requests are most of the traffic. Under Django and DRF each costs several milliseconds of
framework before the service runs (middleware, a thread hop into the single sync thread,
request and auth objects, content negotiation); here a request that carries
`Authorization: Token <key>` and a JSON body goes from the ASGI server to the same service
functions as the DRF views (`next_for` and `submit_for` in annotation.services.serving), the
same input and output serializers and the same error rendering, in a small thread pool of its own, so several requests wait on the database at once.

Anything else goes to Django unchanged: other paths and methods, session (browser) requests,
which keep Django's CSRF checks, a malformed `Authorization` header, another content type, a
Host that is not allowed, or the hot path turned off (`ARBITER_HOT_PATH=0`). The answers are
the same bytes as Django's (tests/annotation/test_hotpath.py compares them), with the same
security headers.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.http.request import split_domain_port, validate_host
from rest_framework import exceptions as drf_exceptions
from rest_framework.renderers import JSONRenderer

from annotation import events
from annotation.api.judging import JudgmentSubmitApi, next_payload, submit_payload
from annotation.errors import api_exception_handler
from annotation.services.serving import next_for, submit_for

logger = logging.getLogger(__name__)

ROUTES = (
    (re.compile(r"/api/v1/campaigns/(\d+)/next/"), "next"),
    (re.compile(r"/api/v1/assignments/(\d+)/submit/"), "submit"),
)
_READ_HEADERS = {b"authorization", b"content-type", b"content-length", b"host", b"transfer-encoding"}
_TOKEN = re.compile(rb"[Tt][Oo][Kk][Ee][Nn] ([0-9a-fA-F]{1,64})")


class HotPath:
    """ASGI middleware in front of Django's handler (config.asgi)."""

    def __init__(self, app: Any, *, threads: int | None = None, enabled: bool | None = None) -> None:
        self.app = app
        self.enabled = settings.ARBITER_HOT_PATH if enabled is None else enabled
        self.threads = threads or settings.ARBITER_HOT_PATH_THREADS
        self._pool: ThreadPoolExecutor | None = None
        self._connections: set = set()  # each pool thread's Django connection, for shutdown()
        self._renderer = JSONRenderer()
        self._headers = _security_headers()

    def shutdown(self) -> None:
        """Stop the pool threads and close the database connections they kept.

        A later request starts a new pool. Tests call this between tests; a server process
        that exits needs nothing.
        """
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        connections, self._connections = self._connections, set()
        for wrapper in connections:
            wrapper.inc_thread_sharing()  # closed from this thread; its own thread has ended
            try:
                wrapper.close()
            finally:
                wrapper.dec_thread_sharing()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        taken = self._route(scope) if self.enabled and scope["type"] == "http" else None
        if taken is None:
            await self.app(scope, receive, send)
            return
        kind, object_id, token = taken
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="arbiter-hotpath")
        status, data, extra_headers, outbox = await asyncio.get_running_loop().run_in_executor(
            self._pool, self._handle, kind, object_id, token, body
        )
        if outbox:
            await events.send_held(outbox)
        content = self._renderer.render(data)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            *self._headers,
            *extra_headers,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _route(self, scope: dict) -> tuple[str, int, str] | None:
        """(kind, id, token) when the request is one the hot path answers exactly as Django would."""
        if scope["method"] != "POST":
            return None
        path = scope["path"]
        root = scope.get("root_path", "")
        if root:
            if not path.startswith(root):
                return None
            path = path[len(root):]
        kind, match = next(((k, m) for p, k in ROUTES if (m := p.fullmatch(path))), (None, None))
        if match is None:
            return None
        headers = {}
        for name, value in scope["headers"]:
            if name in headers and name in _READ_HEADERS:
                return None  # Django joins repeated headers with commas; let it judge those
            headers[name] = value
        auth = _TOKEN.fullmatch(headers.get(b"authorization", b""))
        if auth is None:
            return None
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if kind == "submit" and content_type != b"application/json":  # `next` reads no body
            return None
        # A chunked body, or one over Django's limit, goes to Django. `next` may come without a
        # body and without Content-Length; `submit` must say how long its body is.
        if b"transfer-encoding" in headers:
            return None
        length = headers.get(b"content-length", b"" if kind == "submit" else b"0")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if not length.isdigit() or (limit is not None and int(length) > limit):
            return None
        if not _host_allowed(headers.get(b"host"), scope):
            return None
        return kind, int(match.group(1)), auth.group(1).decode()

    def _handle(self, kind: str, object_id: int, token: str, body: bytes) -> tuple[int, Any, list, list]:
        """Run one request in a pool thread: (status, data, extra headers, events to send)."""
        self._connections.add(connections[DEFAULT_DB_ALIAS])
        try:
            with events.held() as outbox:
                try:
                    status, data = (_next if kind == "next" else _submit)(object_id, token, body)
                    return status, data, [], outbox
                except Exception as exc:  # noqa: BLE001 -- rendered as DRF's handler would
                    return (*_error(exc), [])
        finally:
            # Each pool thread keeps its database connection from one request to the next
            # (taking it from Django's pool and giving it back costs more than a statement); one
            # that failed is closed, and the next request opens a fresh one.
            if connection.errors_occurred or connection.needs_rollback:
                connection.close()


def _next(campaign_id: int, token: str, body: bytes) -> tuple[int, Any]:
    return 200, next_payload(next_for(campaign_id=campaign_id, token=token))


@functools.cache
def _submit_serializers() -> tuple[Any, Any]:
    """The submit view's own input and output serializers, bound once.

    A DRF serializer deep-copies its fields every time it is made, which costs more than the
    whole submit service; validating with `run_validation` and rendering with
    `to_representation` keep no per-request state on the instance, so one instance serves
    every thread.
    """
    return JudgmentSubmitApi.InputSerializer(), JudgmentSubmitApi.OutputSerializer()


def _submit(assignment_id: int, token: str, body: bytes) -> tuple[int, Any]:
    given, shown = _submit_serializers()
    status, judgment = submit_for(
        assignment_id=assignment_id, token=token, answer=lambda: given.run_validation(_parse_json(body))
    )
    return status, submit_payload(shown.to_representation(judgment), judgment)


def _parse_json(body: bytes) -> Any:
    """The body as DRF's JSONParser reads it (strict: no NaN or Infinity); {} when empty."""
    if not body:
        return {}

    def refuse(name: str) -> None:
        raise ValueError(f"Out of range float values are not JSON compliant: {name!r}")

    try:
        return json.loads(body.decode(settings.DEFAULT_CHARSET), parse_constant=refuse)
    except ValueError as exc:
        raise drf_exceptions.ParseError(f"JSON parse error - {exc}") from exc


def _error(exc: Exception) -> tuple[int, Any, list]:
    response = api_exception_handler(exc, {})
    if response is None:  # not an API error: a bug or the database failing
        logger.error("hot path request failed", exc_info=exc)
        return 500, {"message": "Server error.", "extra": {}}, []
    headers = []
    if isinstance(exc, drf_exceptions.AuthenticationFailed):
        headers.append((b"www-authenticate", b"Token"))
    return response.status_code, response.data, headers


def _host_allowed(host: bytes | None, scope: dict) -> bool:
    """Django's Host check (request.get_host); anything it would refuse goes to Django."""
    if settings.USE_X_FORWARDED_HOST or settings.SECURE_SSL_REDIRECT:
        return False
    if host is None:
        server = scope.get("server")
        if not server:
            return False
        host = f"{server[0]}:{server[1]}".encode()
    domain, _port = split_domain_port(host.decode("latin-1"))
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


def _security_headers() -> list[tuple[bytes, bytes]]:
    """The headers Django's middleware and DRF's view add to these API answers."""
    headers = [(b"vary", b"Accept"), (b"allow", b"POST, OPTIONS")]
    if settings.X_FRAME_OPTIONS:
        headers.append((b"x-frame-options", settings.X_FRAME_OPTIONS.encode()))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"x-content-type-options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        policy = policy if isinstance(policy, str) else ",".join(policy)
        headers.append((b"referrer-policy", policy.encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append((b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()))
    return headers


async def _read_body(receive: Any) -> bytes | None:
    """The request body (its Content-Length is within Django's limit); None if the client left."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
