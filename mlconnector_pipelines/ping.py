"""`mlconnector ping`: one cheap authenticated read per configured system.

A person waits for the answer, so the checks run side by side, each system's row is handed on as it finishes,
and the whole ping ends by a deadline: a system still without an answer by then is named, not waited for. Each
system is checked with its own HTTP policy bounded for a ping (`for_ping`): a silent host is given up on after
seconds rather than minutes, and a refused connection or a host name that does not resolve is the answer at once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import ConnectorConfig
from .core.errors import ConfigError, ConnectorError
from .core.http import HttpPolicy
from .core.ping import CONFIG_FIX, PingResult, known_fix
from .core.settings import SecretRef
from .systems.registry import SystemSpec, enabled_sections

DEADLINE_SECONDS = 60.0
# A request of a ping: one retry at most, soon. Settings already shorter (a test's) are kept.
_PING_REQUEST_SECONDS = 10.0
_PING_ATTEMPTS = 2
_PING_BACKOFF_SECONDS = 1.0
_PING_RETRY_AFTER_SECONDS = 5.0
NO_ANSWER_FIX = (
    "network: something accepted the connection but never answered, or packets are dropped: check the host and "
    "port in the URL, the proxy and the firewall"
)


@dataclass(frozen=True)
class _Check:
    system: str
    url: str
    run: Callable[[], PingResult]


def for_ping(policy: HttpPolicy) -> HttpPolicy:
    """A system's HTTP policy as a ping uses it: short timeout, at most one retry, none after a failed connection."""
    return policy.model_copy(
        update={
            "timeout_seconds": min(policy.timeout_seconds, _PING_REQUEST_SECONDS),
            "max_attempts": min(policy.max_attempts, _PING_ATTEMPTS),
            "backoff_base_seconds": min(policy.backoff_base_seconds, _PING_BACKOFF_SECONDS),
            "backoff_cap_seconds": min(policy.backoff_cap_seconds, _PING_BACKOFF_SECONDS),
            "max_retry_after_seconds": min(policy.max_retry_after_seconds, _PING_RETRY_AFTER_SECONDS),
            "retry_connection_failures": False,
        }
    )


def run_pings(
    cfg: ConnectorConfig,
    *,
    deadline_seconds: float = DEADLINE_SECONDS,
    on_result: Callable[[PingResult], None] = lambda result: None,
) -> list[PingResult]:
    """Every check's result, the warehouse first and the systems in registry order; `on_result` is called with each
    as it comes (in the caller's thread), the ones that missed the deadline last."""
    from .warehouse import ping as warehouse

    checks = [_Check(warehouse.title(cfg), warehouse.where(cfg), lambda: warehouse.ping(cfg))]
    checks += [_system_check(spec, section, cfg.data_dir) for spec, section in enabled_sections(cfg)]
    return _side_by_side(checks, deadline_seconds, on_result)


def _system_check(spec: SystemSpec, section, data_dir: Path) -> _Check:
    url = spec.url(section)

    def run() -> PingResult:
        unset = (_unset_secret(spec.title, url, ref, what) for ref, what in spec.secrets(section))
        return next((r for r in unset if r is not None), None) or spec.ping(
            section.model_copy(update={"http": for_ping(section.http)}), data_dir
        )

    return _Check(spec.title, url, run)


def _side_by_side(
    checks: list[_Check], deadline_seconds: float, on_result: Callable[[PingResult], None]
) -> list[PingResult]:
    answers: queue.Queue[tuple[int, PingResult]] = queue.Queue()
    for index, check in enumerate(checks):
        # A daemon: a check still waiting at the deadline must not keep the command from ending.
        threading.Thread(
            target=lambda i=index, c=check: answers.put((i, _answer(c))), name=f"ping {check.system}", daemon=True
        ).start()
    results: list[PingResult | None] = [None] * len(checks)
    ends = time.monotonic() + deadline_seconds
    for _ in checks:
        try:
            index, result = answers.get(timeout=max(0.0, ends - time.monotonic()))
        except queue.Empty:
            break
        results[index] = result
        on_result(result)
    for index, check in enumerate(checks):
        if results[index] is None:
            results[index] = _no_answer(check, deadline_seconds)
            on_result(results[index])
    return results


def _answer(check: _Check) -> PingResult:
    """The check's result; an error before its own check began (building its client) is its answer too."""
    started = time.monotonic()
    try:
        return check.run()
    except Exception as exc:  # one system's failure is its row; the other checks go on
        detail = str(exc) if isinstance(exc, ConnectorError) else f"unexpected {type(exc).__name__}: {exc}"
        fix = known_fix(exc) or (CONFIG_FIX if isinstance(exc, ConfigError) else "")
        latency_ms = (time.monotonic() - started) * 1000
        return PingResult(check.system, check.url, False, None, latency_ms, detail=detail, fix=fix)


def _no_answer(check: _Check, deadline_seconds: float) -> PingResult:
    return PingResult(
        check.system,
        check.url,
        auth_ok=None,
        read_ok=None,
        latency_ms=deadline_seconds * 1000,
        detail=f"timed out: no answer within the ping's {deadline_seconds:g} s",
        fix=NO_ANSWER_FIX,
    )


def _unset_secret(system: str, url: str, ref: SecretRef, what: str) -> PingResult | None:
    """A failed result when the secret's environment variable is missing."""
    variable = ref.missing_env()
    if variable is None:
        return None
    return PingResult(
        system,
        url,
        auth_ok=False,
        read_ok=None,
        latency_ms=0.0,
        detail=f"environment variable {variable} ({what}) is not set",
        fix=f"export {variable}=<value>, or store it with `mlconnector credentials set` "
        "and reference it as `credential:`",
    )
