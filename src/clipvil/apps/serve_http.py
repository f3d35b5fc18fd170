"""The load and safety plumbing of `clipvil serve`: a bounded inference pool and a request-body limit.

- `InferencePool`: `workers` threads and at most `queue` requests waiting for one; a request beyond that is
  refused at once (`PoolFull` -> 503) instead of piling up, and a request that waits or runs longer than its
  timeout gets `PoolTimeout` (-> 504) while its slot stays taken until the work really ends (the bound holds).
- `BodyLimit`: an ASGI wrapper that reads a request body into memory up to `max_bytes` (413 past it, told by
  Content-Length or counted while streaming; 408 when the body is slower than `timeout_s`), then hands the
  buffered body to the app; it also adds `X-Content-Type-Options: nosniff` to every response.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

T = TypeVar("T")


class PoolFull(RuntimeError):
    """Every worker is busy and the queue is full."""


class PoolTimeout(RuntimeError):
    """A request waited and ran longer than its timeout."""


class InferencePool:
    """A fixed set of worker threads with a bounded number of waiting requests."""

    def __init__(self, workers: int, queue: int) -> None:
        if workers < 1 or queue < 0:
            raise ValueError(f"--workers must be >= 1 and --queue >= 0, got {workers} and {queue}")
        self.workers, self.queue = workers, queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clipvil-serve")
        self._slots = threading.Semaphore(workers + queue)
        self._lock = threading.Lock()
        self._taken = 0

    @property
    def taken(self) -> int:
        """Requests running or waiting now."""
        with self._lock:
            return self._taken

    def _release(self, _: Future) -> None:
        with self._lock:
            self._taken -= 1
        self._slots.release()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Runs fn(*args) on a worker; PoolFull at once when workers + queue slots are all taken."""
        if not self._slots.acquire(blocking=False):
            raise PoolFull(f"busy: {self.workers} request(s) running and {self.queue} waiting; retry shortly")
        with self._lock:
            self._taken += 1
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self._release(Future())
            raise
        future.add_done_callback(self._release)
        return future

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        """fn(*args) on a worker, awaited for at most `timeout` seconds (PoolTimeout after that)."""
        future = self.submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            future.cancel()  # drops it if it still waits; a running one finishes and then frees its slot
            raise PoolTimeout(f"the request took longer than {timeout:g} s") from None

    def shutdown(self) -> None:
        """Stops the workers (waiting requests are dropped)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Buffers each request body (at most `max_bytes`) before the app sees it; adds nosniff to responses."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def _read(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await send(message)

        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send_nosniff)
            return
        error = self._declared_error(scope)
        body: bytes | None = None
        if error is None:
            try:
                body = await asyncio.wait_for(self._read(receive), self.timeout_s)
            except _TooLarge:
                error = self._too_large()
            except TimeoutError:
                error = JSONResponse({"detail": f"the request body took longer than {self.timeout_s:g} s"}, 408)
        if error is not None:
            await error(scope, receive, send_nosniff)
            return
        if body is None:  # the client went away
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_nosniff)

    def _too_large(self) -> JSONResponse:
        return JSONResponse({"detail": f"request too large (limit {self.max_bytes} bytes)"}, 413)

    def _declared_error(self, scope: Scope) -> JSONResponse | None:
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return JSONResponse({"detail": "bad Content-Length header"}, 400)
                return self._too_large() if declared > self.max_bytes else None
        return None
