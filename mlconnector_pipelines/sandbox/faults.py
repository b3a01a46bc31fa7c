"""Fault switches a test (or a curious user) sets over HTTP: `POST /_sandbox/faults`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field


class FaultRule(BaseModel):
    """Applies to the next `count` requests whose path contains `path_contains`, after `skip` of them pass."""

    kind: Literal["status", "drop", "delay", "expire_tokens"]
    status: int = 429
    retry_after: float | None = Field(None, description="Seconds in Retry-After; None sends no header.")
    delay_seconds: float = 0.0
    count: int = 1
    skip: int = 0
    path_contains: str = ""


def retry_after_header(seconds: float | None) -> dict[str, str]:
    """`Retry-After` when the simulated server says when to retry; some real 429s don't."""
    return {"Retry-After": f"{seconds:g}"} if seconds is not None else {}


@dataclass
class FaultBook:
    rules: list[FaultRule] = field(default_factory=list)
    fired: dict[str, int] = field(default_factory=dict)

    def add(self, rules: list[FaultRule]) -> None:
        self.rules.extend(rules)

    def clear(self) -> None:
        self.rules.clear()

    def take(self, path: str) -> FaultRule | None:
        """The first rule that fires for this request; every matching rule counts the request."""
        chosen = None
        for rule in self.rules:
            if rule.path_contains not in path or rule.count <= 0:
                continue
            if rule.skip > 0:
                rule.skip -= 1
            elif chosen is None:
                rule.count -= 1
                chosen = rule
        if chosen is not None:
            key = chosen.kind if chosen.kind != "status" else f"status_{chosen.status}"
            self.fired[key] = self.fired.get(key, 0) + 1
        return chosen
