"""An async client for a fleet of OpenAI-compatible endpoints (``vllm serve`` replicas, hosted APIs).

One labelling run spreads its requests over every base URL: each request goes to the healthy
endpoint with the fewest requests in flight (ties round-robin), at most ``max_in_flight`` requests
are open at once, and a token bucket caps the request rate (hosted APIs meter requests per
second). 429, 5xx and timeouts are retried with exponential backoff and jitter (honouring
``Retry-After``), on another endpoint when there is one. An endpoint that fails ``fail_threshold``
times in a row is taken out of rotation for ``cooldown`` seconds, then tried again; one success
puts it back for good. The API key comes from an environment variable and is sent only as a
header: it is in no log line, message or ``repr``.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger

log = get_logger(__name__)
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
T = TypeVar("T")


class TokenBucket:
    """``rate`` requests per second on average, bursts of at most ``burst``."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        if rate <= 0:
            raise RagdistillError(f"rate_limit={rate}: must be > 0 requests/s (or unset for no limit)")
        self.rate, self.burst = float(rate), max(1, int(burst))
        self._tokens, self._last = float(self.burst), time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # waiters are served in order
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


@dataclass
class Endpoint:
    """One base URL and what the client knows of its health."""

    url: str
    in_flight: int = 0
    ok: int = 0  # successful requests
    failed: int = 0  # failed attempts (any cause)
    consecutive_failures: int = 0
    down_until: float = 0.0  # monotonic time it comes back into rotation
    times_taken_out: int = 0
    last_error: str = ""

    def healthy(self, now: float) -> bool:
        return now >= self.down_until


@dataclass
class FleetSettings:
    max_in_flight: int = 8
    rate_limit: float | None = None  # requests/s over the whole fleet; None = unlimited
    rate_burst: int = 1
    max_retries: int = 5
    timeout: float = 120.0
    backoff: float = 1.0  # seconds; doubled per retry, with jitter
    fail_threshold: int = 3  # consecutive failures that take an endpoint out of rotation
    cooldown: float = 30.0  # seconds out of rotation before it is tried again
    extra_headers: dict[str, str] = field(default_factory=dict)


def parse_base_urls(base_url: str | Sequence[str] | None) -> list[str]:
    """``"http://a/v1,http://b/v1"``, a list, or one URL -> a list of URLs without trailing '/'."""
    if base_url is None:
        return []
    items = base_url.split(",") if isinstance(base_url, str) else list(base_url)
    urls = [str(u).strip().rstrip("/") for u in items if str(u).strip()]
    for u in urls:
        if not u.startswith(("http://", "https://")):
            raise RagdistillError(f"teacher base URL {u!r}: expected http(s)://host:port/v1")
    return urls


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, also when an event loop already runs here
    (notebooks): then it runs on a fresh loop in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class FleetClient:
    """POST JSON to ``<base_url><path>`` across a fleet; see the module docstring."""

    def __init__(self, base_urls: Sequence[str], api_key_env: str = "OPENAI_API_KEY", settings: FleetSettings | None = None) -> None:
        urls = parse_base_urls(base_urls)
        if not urls:
            raise RagdistillError("teacher.base_url: no endpoint given; set teacher.base_url=http://host:port/v1 (or a list)")
        self.endpoints = [Endpoint(u) for u in urls]
        self.api_key_env = api_key_env
        self.settings = settings or FleetSettings()
        self._rr = 0
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:  # never the key
        return f"FleetClient({[e.url for e in self.endpoints]}, max_in_flight={self.settings.max_in_flight})"

    @property
    def stats(self) -> dict[str, dict[str, Any]]:
        """Per endpoint: requests served, failed attempts, times taken out of rotation, in rotation now."""
        now = time.monotonic()
        with self._stats_lock:
            return {e.url: {"ok": e.ok, "failed": e.failed, "taken_out": e.times_taken_out, "in_rotation": e.healthy(now),
                            "in_flight": e.in_flight, "last_error": e.last_error} for e in self.endpoints}

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        h = dict(self.settings.extra_headers)
        if key:
            h["Authorization"] = f"Bearer {key}"
        return h

    def _pick(self, avoid: Endpoint | None) -> Endpoint:
        now = time.monotonic()
        pool = [e for e in self.endpoints if e.healthy(now)]
        if len(pool) > 1 and avoid in pool:
            pool.remove(avoid)  # a retry goes elsewhere when it can
        if not pool:  # all out of rotation: probe the one that comes back first
            return min(self.endpoints, key=lambda e: e.down_until)
        n = len(self.endpoints)
        self._rr = (self._rr + 1) % n
        order = {id(e): (i - self._rr) % n for i, e in enumerate(self.endpoints)}
        return min(pool, key=lambda e: (e.in_flight, order[id(e)]))

    def _failed(self, ep: Endpoint, err: str, counts_for_health: bool) -> None:
        with self._stats_lock:
            ep.failed += 1
            ep.last_error = err
            if not counts_for_health:  # 429: the endpoint is alive, only busy
                return
            ep.consecutive_failures += 1
            if ep.consecutive_failures >= self.settings.fail_threshold:
                was_up = ep.healthy(time.monotonic())
                ep.down_until = time.monotonic() + self.settings.cooldown
                if was_up:
                    ep.times_taken_out += 1
                    log.warning("endpoint %s out of rotation for %.0fs after %d failures in a row (last: %s)",
                                ep.url, self.settings.cooldown, ep.consecutive_failures, err)

    def _succeeded(self, ep: Endpoint) -> None:
        with self._stats_lock:
            if ep.times_taken_out and ep.consecutive_failures:
                log.info("endpoint %s back in rotation", ep.url)
            ep.ok += 1
            ep.consecutive_failures = 0
            ep.down_until = 0.0

    async def _post(self, client: httpx.AsyncClient, path: str, payload: dict[str, Any], sem: asyncio.Semaphore,
                    bucket: TokenBucket | None) -> dict[str, Any]:
        s = self.settings
        ep: Endpoint | None = None
        err = ""
        for attempt in range(s.max_retries + 1):
            wait = s.backoff * 2**attempt
            async with sem:
                if bucket is not None:
                    await bucket.acquire()
                ep = self._pick(avoid=ep)  # chosen at send time, with what the fleet knows now
                ep.in_flight += 1
                try:
                    r = await client.post(f"{ep.url}{path}", json=payload, headers=self._headers(), timeout=s.timeout)
                except (httpx.TransportError, httpx.TimeoutException) as e:  # refused, reset, timed out
                    err, health = type(e).__name__, True
                else:
                    if r.status_code == 200:
                        self._succeeded(ep)
                        try:
                            return r.json()
                        except ValueError:
                            raise RagdistillError(f"teacher endpoint {ep.url}{path} answered 200 with a body that is not JSON: {r.text[:200]!r}") from None
                    if r.status_code not in RETRY_STATUS:
                        raise RagdistillError(f"teacher endpoint {ep.url}{path} answered {r.status_code}: {r.text[:300]}")
                    err, health = f"HTTP {r.status_code}", r.status_code != 429
                    if r.headers.get("Retry-After"):
                        try:
                            wait = float(r.headers["Retry-After"])
                        except ValueError:
                            pass
                finally:
                    ep.in_flight -= 1
            self._failed(ep, err, health)
            if attempt == s.max_retries:
                break
            now = time.monotonic()
            if health and any(e is not ep and e.healthy(now) for e in self.endpoints):
                wait = 0.0  # a dead endpoint: go straight to a live one
            wait *= 1 + 0.1 * random.random()
            log.warning("teacher endpoint %s: %s, retry %d in %.1fs", ep.url, err, attempt + 1, wait)
            await asyncio.sleep(wait)
        urls = ", ".join(e.url for e in self.endpoints)
        raise RagdistillError(
            f"teacher endpoints [{urls}] failed after {s.max_retries + 1} tries (last: {err} from {ep.url if ep else '?'}); "
            "check the servers are up, or raise teacher.max_retries / teacher.cooldown_s"
        )

    async def post_many(self, path: str, payloads: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """All ``payloads``, at most ``max_in_flight`` open at once; answers in input order."""
        s = self.settings
        sem = asyncio.Semaphore(max(1, s.max_in_flight))
        bucket = TokenBucket(s.rate_limit, s.rate_burst) if s.rate_limit else None
        limits = httpx.Limits(max_connections=max(1, s.max_in_flight), max_keepalive_connections=max(1, s.max_in_flight))
        async with httpx.AsyncClient(limits=limits, timeout=s.timeout) as client:
            tasks = [asyncio.ensure_future(self._post(client, path, p, sem, bucket)) for p in payloads]
            try:
                return list(await asyncio.gather(*tasks))
            finally:
                for t in tasks:
                    t.cancel()

    def post_many_sync(self, path: str, payloads: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return run_sync(self.post_many(path, payloads))
