"""Fault switches a test (or a curious user) sets over HTTP: `POST /_sandbox/faults`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field


class Mutation(BaseModel):
    """A change a `mutate` fault applies to the service's records before it serves the request."""

    entity: str
    key: Any
    company: str | None = None  # default: the service's first company
    set: dict[str, Any] = Field(default_factory=dict)


class FaultRule(BaseModel):
    """Applies to the next `count` requests whose path contains `path_contains`, after `skip` of them pass.

    Kinds: `status` (answer `status`, with `retry_after` and, for SAP, `error_code`), `drop` (half
    the body, then a broken connection), `delay`, `expire_tokens` (sessions or tokens end now),
    `html` (200 with an HTML page, as a proxy's login page), `json` (200 with `value` as the JSON body),
    `corrupt` (`field` of the page's first
    record becomes `value`), `mutate` (apply `mutations`, then serve: records leave or enter a
    filter between two pages). After a write is committed: `commit_then_drop` (the connection
    breaks before the answer's body) and `commit_then_504` (a gateway's timeout answer): the write
    happened, the client cannot know. `commit_then_cut` (a write): committed and answered with its status,
    but the body cut to half (`value` "empty": no body at all), as a proxy that trims answers: the client
    knows it was saved, not what as. `commit_late` (a write): a gateway's 504 now, the write committed
    `delay_seconds` later, as a server still working after the client stopped waiting.
    `changeset_status` (OData $batch): the batch is answered 200
    and its first changeset's part carries `status` (and `retry_after`); nothing of it is applied, unless
    `value` is "after_commit": the changeset is applied, then answered so (a 504 after the commit).
    """

    kind: Literal[
        "status",
        "drop",
        "delay",
        "expire_tokens",
        "html",
        "json",
        "corrupt",
        "mutate",
        "commit_then_drop",
        "commit_then_504",
        "commit_then_cut",
        "changeset_status",
        "commit_late",
    ]
    status: int = 429
    retry_after: float | None = Field(None, description="Seconds in Retry-After; None sends no header.")
    error_code: int | None = Field(None, description="The service's own error code in the error body.")
    delay_seconds: float = 0.0
    field: str | None = None
    value: Any = None
    mutations: list[Mutation] = Field(default_factory=list)
    count: int = 1
    skip: int = 0
    path_contains: str = ""


HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in to your account</title></head>"
    b"<body><form method='post' action='/login'>Session expired: sign in again.</form></body></html>"
)


def retry_after_header(seconds: float | None) -> dict[str, str]:
    """`Retry-After` when the simulated server says when to retry; some real 429s don't."""
    return {"Retry-After": f"{seconds:g}"} if seconds is not None else {}


AFTER_COMMIT = ("commit_then_drop", "commit_then_504", "commit_then_cut")
GATEWAY_TIMEOUT_PAGE = (
    b"<html><body><h1>504 Gateway Time-out</h1>The upstream server did not answer in time.</body></html>"
)


@dataclass
class FaultBook:
    rules: list[FaultRule] = field(default_factory=list)
    fired: dict[str, int] = field(default_factory=dict)

    def add(self, rules: list[FaultRule]) -> None:
        self.rules.extend(rules)

    def clear(self) -> None:
        self.rules.clear()

    def take(self, path: str, method: str = "GET") -> FaultRule | None:
        """The first rule that fires for this request; every matching rule counts the request.

        After-commit and late-commit rules only match writes."""
        chosen = None
        for rule in self.rules:
            if rule.path_contains not in path or rule.count <= 0:
                continue
            if rule.kind in (*AFTER_COMMIT, "commit_late") and method in ("GET", "HEAD"):
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
