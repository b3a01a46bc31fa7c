"""The shape of a connectivity check's answer, and the table it prints as."""

from __future__ import annotations

from dataclasses import dataclass

from tabulate import tabulate


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
    rows = [[r.system, r.url, _mark(r.auth_ok), _mark(r.read_ok), f"{r.latency_ms:,.0f} ms",
             r.detail if r.ok else f"{r.detail}\nfix: {r.fix}" if r.fix else r.detail] for r in results]
    return tabulate(rows, headers=["system", "url", "auth", "read", "latency", "result"], tablefmt="simple")


def render_markdown(results: list[PingResult]) -> str:
    lines = ["| system | url | auth | read | latency | result | fix |", "|---|---|---|---|---|---|---|"]
    for r in results:
        cells = [r.system, r.url, _mark(r.auth_ok), _mark(r.read_ok), f"{r.latency_ms:,.0f} ms", r.detail, r.fix]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)
