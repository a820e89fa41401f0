"""API keys and per-key rate limits for the ingress.

Keys come from an environment variable (comma-separated) and/or a secrets file (one per line; a
line ``sha256:<hex>`` is an already hashed key, so the file need not hold plain keys). Only SHA-256
digests are kept in memory; a presented key is hashed and compared with every stored digest by
``hmac.compare_digest`` (constant time, no early exit). A request without a valid key gets 401
(``Authorization: Bearer <key>`` or ``X-API-Key: <key>``); the open paths (``/healthz``) need none.
The rate limit is a token bucket per key: ``rate_limit_per_minute`` tokens, refilled continuously;
an empty bucket gives 429 with ``Retry-After``. Buckets live in each ingress replica, so with R
replicas a key gets up to R times the limit.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import time
from pathlib import Path
from typing import Awaitable, Callable, Mapping, Optional

from fastapi import Request
from fastapi.responses import JSONResponse

from rayapp.config import AuthConfig

__all__ = ["KeyStore", "RateLimiter", "Guard", "guard_dispatch"]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class KeyStore:
    def __init__(self, digests: list[bytes]):
        self._digests = list(digests)

    @classmethod
    def from_config(cls, cfg: AuthConfig, environ: Mapping[str, str] = os.environ) -> "KeyStore":
        digests: list[bytes] = []
        if cfg.api_keys_env:
            raw = environ.get(cfg.api_keys_env, "")
            keys = [k.strip() for k in raw.split(",") if k.strip()]
            if not keys:
                raise ValueError(f"auth.api_keys_env: the environment variable {cfg.api_keys_env} is unset or empty")
            digests += [_digest(k) for k in keys]
        if cfg.api_keys_file:
            path = Path(cfg.api_keys_file)
            if not path.is_file():
                raise ValueError(f"auth.api_keys_file: {path} is not a file")
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if line.startswith("sha256:"):
                    try:
                        d = bytes.fromhex(line[7:])
                    except ValueError:
                        d = b""
                    if len(d) != 32:
                        raise ValueError(f"{path}:{n}: 'sha256:' must be followed by 64 hex digits")
                    digests.append(d)
                else:
                    digests.append(_digest(line))
        return cls(digests)

    def __len__(self) -> int:
        return len(self._digests)

    def check(self, key: str) -> Optional[str]:
        """The key's id (a digest prefix, safe to log) when it is valid, else None."""
        d = _digest(key)
        ok = False
        for stored in self._digests:  # every comparison runs: no early exit
            ok |= hmac.compare_digest(d, stored)
        return d.hex()[:12] if ok else None


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.capacity, self.rate, self.clock = float(per_minute), per_minute / 60.0, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, last time)

    def allow(self, key_id: str) -> tuple[bool, int]:
        """(allowed, seconds to wait when not)."""
        now = self.clock()
        tokens, last = self._buckets.get(key_id, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key_id] = (tokens - 1.0, now)
            return True, 0
        self._buckets[key_id] = (tokens, now)
        return False, max(1, math.ceil((1.0 - tokens) / self.rate))


class Guard:
    """Keys + limiter + open paths, from an :class:`rayapp.config.AuthConfig`."""

    def __init__(self, cfg: AuthConfig, environ: Mapping[str, str] = os.environ,
                 clock: Callable[[], float] = time.monotonic):
        self.keys = KeyStore.from_config(cfg, environ)
        self.limiter = RateLimiter(cfg.rate_limit_per_minute, clock) if cfg.rate_limit_per_minute else None
        self.open_paths = set(cfg.open_paths)

    @property
    def enabled(self) -> bool:
        return len(self.keys) > 0 or self.limiter is not None

    def refusal(self, request: Request) -> Optional[JSONResponse]:
        """The 401 (no valid key) or 429 (over the key's rate) answer to ``request``; None lets it
        through (also when the guard is off or the path is open)."""
        if not self.enabled or request.url.path in self.open_paths:
            return None
        key_id = "anonymous"
        if len(self.keys):
            key = _presented_key(request)
            key_id = self.keys.check(key) if key else None
            if key_id is None:
                return _refuse(401, "unauthorized", "missing or invalid API key: send 'Authorization: Bearer <key>' "
                               "or 'X-API-Key: <key>'", {"WWW-Authenticate": "Bearer"})
        if self.limiter is not None:
            ok, wait = self.limiter.allow(key_id)
            if not ok:
                return _refuse(429, "rate_limited", f"rate limit reached; retry in {wait} s", {"Retry-After": str(wait)})
        return None


def _presented_key(request: Request) -> Optional[str]:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


def _refuse(status: int, kind: str, message: str, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"type": kind, "message": message}}, headers=headers)


def guard_dispatch(get_guard: Callable[[], Optional[Guard]]):
    """A Starlette ``http`` middleware enforcing the current guard (none: every request passes)."""

    async def dispatch(request: Request, call_next: Callable[[Request], Awaitable]):
        guard = get_guard()
        refusal = guard.refusal(request) if guard is not None else None
        return refusal if refusal is not None else await call_next(request)

    return dispatch
