"""Scripted failures for integrators (``cdrgate serve --faults FILE``): answer an errno, delay,
or cut a download, for chosen calls of an endpoint, so client code meets the field's failure
paths on a test bench. Off unless given; ``serve`` refuses it on a non-loopback address
without ``--i-know``. The file format and recipes are in docs/faults.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import re
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdrgate.api import routes
from cdrgate.api.envelope import failure
from cdrgate.errors import Errno, UsageError, meaning
from cdrgate.settings import Settings

log = logging.getLogger("cdrgate.faults")

ENDPOINTS = tuple(routes.ENDPOINTS)
# Settings a fault file may tighten: the rules an integration must survive.
SETTING_KEYS = ("random_ttl_seconds", "lockout_failures", "lockout_seconds", "token_idle_seconds")
_FAULT_KEYS = {"endpoint", "errno", "delay_seconds", "cut_after_bytes", "skip", "count", "fraction"}
_ACTIONS = ("errno", "delay_seconds", "cut_after_bytes")
_API_PATH = re.compile(r"^/api/[^/]+/(?P<endpoint>.+?)/*$")


@dataclass
class Fault:
    """One rule: which calls of ``endpoint`` it hits and what it does to them."""

    number: int  # 1-based position in the file, for the log
    endpoint: str
    errno: Errno | None = None
    delay_seconds: float = 0.0
    cut_after_bytes: int | None = None
    skip: int = 0  # let this many calls through first
    count: int | None = None  # then hit at most this many (None: no limit)
    fraction: float = 1.0  # hit this share of the eligible calls, at random
    calls: int = 0
    hits: int = 0

    def hits_call(self, rng: random.Random) -> int | None:
        """The call's number when this fault hits it, else None (state under the plan's lock)."""
        self.calls += 1
        if self.calls <= self.skip or (self.count is not None and self.hits >= self.count):
            return None
        if self.fraction < 1.0 and rng.random() >= self.fraction:
            return None
        self.hits += 1
        return self.calls


@dataclass
class FaultPlan:
    source: str
    faults: list[Fault]
    settings: dict[str, int] = field(default_factory=dict)
    seed: int | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)

    def tighten(self, settings: Settings) -> Settings:
        """``settings`` with the file's [settings] (shorter random life, fewer tries...)."""
        given = self.settings
        return dataclasses.replace(
            settings,
            random_ttl_seconds=given.get("random_ttl_seconds", settings.random_ttl_seconds),
            lockout_failures=given.get("lockout_failures", settings.lockout_failures),
            lockout_seconds=given.get("lockout_seconds", settings.lockout_seconds),
            token_idle_seconds=given.get("token_idle_seconds", settings.token_idle_seconds),
        )

    def hits(self, endpoint: str) -> list[tuple[Fault, int]]:
        with self._lock:
            hit = [(f, f.hits_call(self._rng)) for f in self.faults if f.endpoint == endpoint]
        return [(fault, call) for fault, call in hit if call is not None]


def load(path: Path) -> FaultPlan:
    """Read a fault file; any mistake is a UsageError naming the file and the rule."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--faults {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--faults {path}: not TOML: {exc}") from None
    unknown = set(data) - {"fault", "settings", "seed"}
    if unknown:
        raise UsageError(f"--faults {path}: unknown section {sorted(unknown)[0]!r}")
    rules = data.get("fault", [])
    if not isinstance(rules, list) or not rules:
        raise UsageError(f"--faults {path}: no [[fault]] rule")
    faults = [_fault(path, number, rule) for number, rule in enumerate(rules, 1)]
    settings = data.get("settings", {})
    for key, value in settings.items():
        if key not in SETTING_KEYS or not isinstance(value, int) or value < 1:
            raise UsageError(
                f"--faults {path}: [settings] takes positive integers for "
                f"{', '.join(SETTING_KEYS)}; not {key} = {value!r}"
            )
    seed = data.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise UsageError(f"--faults {path}: seed must be an integer")
    return FaultPlan(str(path), faults, dict(settings), seed)


def _fault(path: Path, number: int, rule: Any) -> Fault:
    where = f"--faults {path}: fault {number}"
    if not isinstance(rule, dict):
        raise UsageError(f"{where}: not a table")
    unknown = set(rule) - _FAULT_KEYS
    if unknown:
        raise UsageError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    if rule.get("endpoint") not in ENDPOINTS:
        raise UsageError(f"{where}: endpoint must be one of {', '.join(ENDPOINTS)}")
    actions = [key for key in _ACTIONS if key in rule]
    if len(actions) != 1:
        raise UsageError(f"{where}: give exactly one of {', '.join(_ACTIONS)}")
    fault = Fault(number, rule["endpoint"])
    try:
        if "errno" in rule:
            fault.errno = Errno(str(rule["errno"]))
        fault.delay_seconds = _number(rule.get("delay_seconds", 0.0), 0.0)
        if "cut_after_bytes" in rule:
            fault.cut_after_bytes = int(_number(rule["cut_after_bytes"], 0))
        fault.skip = int(_number(rule.get("skip", 0), 0))
        if "count" in rule:
            fault.count = int(_number(rule["count"], 1))
        fault.fraction = _number(rule.get("fraction", 1.0), 0.0, 1.0)
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None
    if fault.cut_after_bytes is not None and fault.endpoint != "cdr/download":
        raise UsageError(f"{where}: cut_after_bytes only applies to cdr/download")
    return fault


def _number(value: Any, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{value!r} is out of range")
    return float(value)


class _Cut(Exception):
    """Raised into the response's send to stop it; the connection then closes unfinished."""


class FaultInjector:
    """ASGI middleware applying a :class:`FaultPlan` to API calls, logging every hit."""

    def __init__(self, app: ASGIApp, plan: FaultPlan) -> None:
        self.app = app
        self.plan = plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _API_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        endpoint = match["endpoint"]
        cut_after: int | None = None
        for fault, call in self.plan.hits(endpoint):
            if fault.errno is not None:
                log.warning(
                    "fault %d injected: %s call %d answered errno %s (%s)",
                    fault.number, endpoint, call, fault.errno.value, meaning(fault.errno),
                )  # fmt: skip
                await failure(fault.errno)(scope, receive, send)
                return
            if fault.delay_seconds:
                log.warning(
                    "fault %d injected: %s call %d delayed %.1f s",
                    fault.number, endpoint, call, fault.delay_seconds,
                )  # fmt: skip
                await asyncio.sleep(fault.delay_seconds)
            if fault.cut_after_bytes is not None:
                log.warning(
                    "fault %d injected: %s call %d cut after %d bytes",
                    fault.number, endpoint, call, fault.cut_after_bytes,
                )  # fmt: skip
                cut_after = fault.cut_after_bytes
        if cut_after is None:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, _cutting_send(send, cut_after))
        except* _Cut:
            pass  # returning unfinished makes the server close the connection mid-body


def _cutting_send(send: Send, limit: int) -> Send:
    sent = 0

    async def cutting(message: Message) -> None:
        nonlocal sent
        if message["type"] != "http.response.body":
            await send(message)
            return
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if len(body) > limit - sent:
            body, more = body[: limit - sent], True
        sent += len(body)
        await send({"type": "http.response.body", "body": body, "more_body": more})
        if more and sent >= limit:
            raise _Cut

    return cutting
