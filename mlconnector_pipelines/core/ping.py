"""The shape of a connectivity check's answer, and the table it prints as."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from .credentials import CredentialError
from .errors import ConnectorError


@dataclass
class PingResult:
    system: str
    url: str
    auth_ok: bool | None  # None: not reached (an earlier step failed)
    read_ok: bool | None
    latency_ms: float
    detail: str = ""
    fix: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.auth_ok and self.read_ok)


def _mark(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def render_table(results: list[PingResult]) -> str:
    rows = [
        [
            r.system,
            r.url,
            _mark(r.auth_ok),
            _mark(r.read_ok),
            f"{r.latency_ms:,.0f} ms",
            r.detail if r.ok else f"{r.detail}\nfix: {r.fix}" if r.fix else r.detail,
        ]
        for r in results
    ]
    return tabulate(rows, headers=["system", "url", "auth", "read", "latency", "result"], tablefmt="simple")


def render_line(result: PingResult) -> str:
    """One system's answer as soon as it is in: ok, or what failed (the table that follows has the fix)."""
    return f"{result.system}: {'ok' if result.ok else 'FAILED'} ({result.latency_ms:,.0f} ms) {result.detail}"


def render_markdown(results: list[PingResult]) -> str:
    lines = ["| system | url | auth | read | latency | result | fix |", "|---|---|---|---|---|---|---|"]
    for r in results:
        cells = [r.system, r.url, _mark(r.auth_ok), _mark(r.read_ok), f"{r.latency_ms:,.0f} ms", r.detail, r.fix]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def run_check(
    system: str,
    url: str,
    *,
    connect: Callable[[], Any],
    authenticate: Callable[[Any], None],
    read: Callable[[Any], str],
    likely_fix: Callable[[Exception], str],
) -> PingResult:
    """connect → authenticate → read, timed; a ConnectorError marks the step that failed, with its fix."""
    result = PingResult(system, url, auth_ok=None, read_ok=None, latency_ms=0.0)
    started = time.monotonic()
    client = None
    try:
        client = connect()
        authenticate(client)
        result.auth_ok = True
        result.detail = read(client)
        result.read_ok = True
    except Exception as exc:  # whatever stops one system's check is its answer; the next system's check still runs
        if result.auth_ok:
            result.read_ok = False
        else:
            result.auth_ok = False
        result.detail = str(exc) if isinstance(exc, ConnectorError) else f"unexpected {type(exc).__name__}: {exc}"
        result.fix = likely_fix(exc)
    finally:
        if client is not None:
            client.close()
        result.latency_ms = (time.monotonic() - started) * 1000
    return result


def known_fix(exc: Exception) -> str | None:
    """The fix an error carries, or one that holds for every system; None leaves it to the system's check."""
    fix = getattr(exc, "fix", None)
    if fix:
        return fix
    if isinstance(exc, CredentialError):
        return "store the secret with `mlconnector credentials set <name>` or fix the credentials key"
    return None


CONFIG_FIX = "fix connector.yaml as the message says"
