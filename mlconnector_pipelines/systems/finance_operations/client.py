"""Finance & Operations OData client: entity sets under /data/, exact decimals, atomic $batch changesets.

A token per environment scope (msal, renewed before expiry, renewed once on a 401). Amounts are
Decimal both ways: request bodies carry them as exact JSON numbers, answers are parsed with
Decimal. A changeset in `$batch` is atomic (all its requests or none); F&O answers the batch 200
and puts a failed changeset's error in its part, which this client raises naming the request.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
from requests_toolbelt.multipart.decoder import (
    ImproperBodyPartContentException,
    MultipartDecoder,
    NonMultipartContentTypeException,
)

from ...core.errors import OutcomeUnknown, RequestFailedError
from ...core.http import RETRYABLE_STATUSES, NotApplied, ThrottledClient
from ...core.odata import json_body, page_and_next_link
from ...core.paginate import NextLinkPages
from ...core.tls import ssl_context
from ..entra import EntraTokenProvider
from .config import FinanceOperationsConfig

SYSTEM = "Finance and Operations"
# The token's scope is the environment URL (config.scope), and F&O needs no API permission in Entra: a resource
# Entra does not know is a mistyped URL.
ENTRA_FIXES = {
    "AADSTS500011": "no F&O environment at that address in this tenant: check finance_operations.environment_url "
    "(exactly the environment's URL, lower case, in the same tenant as the app)"
}
_JSON = "application/json"


def fo_error_message(response: httpx.Response) -> tuple[str, str | None]:
    """(message, code) of an F&O error: the Infolog text in `innererror` says what was wrong; the outer
    message is usually only "An error has occurred."."""
    try:
        body = json.loads(response.content)
    except ValueError:
        text = response.text.strip()
        return (text[:400] or response.reason_phrase, None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        inner = error.get("innererror") if isinstance(error.get("innererror"), dict) else {}
        message = inner.get("message") or error.get("message") or response.reason_phrase
        return (str(message), str(error.get("code")) if error.get("code") else None)
    if isinstance(body, dict) and body.get("Message"):  # the web API's own shape (e.g. an unregistered app)
        return (str(body["Message"]), None)
    return (response.text[:400], None)


def literal(value: str) -> str:
    """An OData string literal: single quotes, a quote doubled."""
    return "'" + str(value).replace("'", "''") + "'"


def key_segment(**parts: Any) -> str:
    """`(dataAreaId='usmf',JournalBatchNumber='00601')`: strings quoted, numbers bare."""
    inner = ",".join(f"{name}={literal(v) if isinstance(v, str) else v}" for name, v in parts.items())
    return "(" + quote(inner, safe=",=()'") + ")"


@dataclass(frozen=True)
class BatchRequest:
    method: str  # POST | PATCH | DELETE
    path: str  # entity set (and key), relative to /data/
    body: Mapping[str, Any] | None = None


class ChangesetFailed(RequestFailedError):
    """A changeset of a $batch was refused: none of its requests was applied. `index` is the failing request's."""

    def __init__(self, message: str, *, status: int, code: str | None, index: int | None, server_message: str):
        super().__init__(SYSTEM, message, status=status, code=code, server_message=server_message)
        self.index = index


class FinanceOperationsClient:
    def __init__(self, cfg: FinanceOperationsConfig, *, client_secret: str):
        self.cfg = cfg
        self.tokens = EntraTokenProvider.for_section(
            cfg, system=SYSTEM, client_secret=client_secret, name="finance_operations", fixes=ENTRA_FIXES
        )
        self.http = ThrottledClient(
            SYSTEM,
            base_url=f"{cfg.api_url}/data",
            policy=cfg.http,
            auth=self.tokens,
            verify=ssl_context(cfg.ca_bundle, what="finance_operations"),
            secrets=(client_secret,),
            headers={"Accept": _JSON, "OData-Version": "4.0", "OData-MaxVersion": "4.0"},
            error_message=fo_error_message,
        )

    def close(self) -> None:
        self.http.close()
        self.tokens.close()

    # -- reads -----------------------------------------------------------------------------------

    def parse(self, response: httpx.Response) -> Any:
        """A JSON answer with its numbers as Decimal (amounts exact, digit for digit)."""
        try:
            return json.loads(response.content, parse_float=Decimal)
        except ValueError as exc:
            raise self.http.malformed(response, f"malformed JSON: {exc}") from None

    def pages(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        select: Sequence[str] | None = None,
        orderby: str | None = None,
        cross_company: bool = False,
        top: int | None = None,
    ) -> Iterator[list[dict]]:
        """Pages of an entity set, following @odata.nextLink (opaque; resolved against the page it came in)."""
        params: dict[str, str] = {}
        if filter:
            params["$filter"] = filter
        if select:
            params["$select"] = ",".join(select)
        if orderby:
            params["$orderby"] = orderby
        if cross_company:
            params["cross-company"] = "true"
        if top is not None:
            params["$top"] = str(top)
        yield from NextLinkPages(
            self.http,
            f"/{entity_set}",
            self._read_page,
            params=params or None,
            headers={"Prefer": f"odata.maxpagesize={self.cfg.page_size}"},
        )

    def _read_page(self, response: httpx.Response) -> tuple[list[dict], str | None]:
        return page_and_next_link(self.http, response, self.parse(response))

    def collection(self, entity_set: str, **query: Any) -> list[dict]:
        return [record for page in self.pages(entity_set, **query) for record in page]

    def first(self, entity_set: str, **query: Any) -> dict | None:
        page = next(self.pages(entity_set, top=1, **query), [])
        return page[0] if page else None

    # -- writes (no idempotency key: never repeated when the outcome is unknown) ---------------------

    def create(self, entity_set: str, record: Mapping[str, Any], read: Callable[[dict], Any] = lambda r: r) -> Any:
        """POST one record; `read` of the server's version of it (e.g. the number it gave). OutcomeUnknown when
        F&O may have created it, or created it and answered with a body that does not say what."""
        response = self.http.request(
            "POST", f"/{entity_set}", content=json_body(record), headers={"Content-Type": _JSON}
        )
        return self.http.read_written(response, lambda answer: read(self.parse(answer)))

    def delete(self, path: str) -> None:
        self.http.request("DELETE", f"/{path}")

    def changeset(self, requests: Sequence[BatchRequest]) -> None:
        """Send `requests` as one atomic changeset in a $batch.

        Raises ChangesetFailed (nothing applied) naming the request F&O refused, OutcomeUnknown when the
        answer was lost (the changeset may or may not have been applied). A changeset answered 429 or 503
        inside the batch was refused before it ran (it is atomic): it is sent again after the policy's wait.
        One answered 502 or 504 inside it may have been applied first (a timeout says nothing of what it cut
        short): OutcomeUnknown, as a whole request answered so, for the lookup to settle; sent again, a
        committed one was refused as existing lines and the journal deleted, or its lines doubled."""
        batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
        content = _multipart(batch, changeset, f"{self.cfg.api_url}/data", requests)
        self.http.repeat(lambda: self._send_changeset(content, batch, len(requests)))

    def _send_changeset(self, content: bytes, batch: str, expected: int) -> None:
        try:
            response = self.http.request(
                "POST",
                "/$batch",
                content=content,
                headers={"Content-Type": f"multipart/mixed; boundary={batch}", "Accept": "multipart/mixed"},
            )
        except RequestFailedError as exc:
            if exc.status not in _BATCH_REFUSED:
                raise
            # A server may answer a one-changeset batch's refusal as the batch's own error: nothing applied.
            raise ChangesetFailed(
                f"$batch refused, nothing of it applied: {exc.server_message}",
                status=exc.status,
                code=exc.code,
                index=None,
                server_message=exc.server_message,
            ) from exc
        statuses = [int(s) for s in _STATUS_LINE.findall(response.content)]
        if len(statuses) == expected and all(200 <= s < 300 for s in statuses):
            return  # every request applied; the entities it echoes are not needed
        # An answer cut short or garbled on the way says neither that the changeset was applied nor that it
        # was refused: unknown, settled by reading the lines back. A refusal it does say is raised as one.
        failed = self.http.read_written(response, lambda answer: _refusals(answer, expected))
        self._raise_for_changeset(response, failed[0], expected)

    def _raise_for_changeset(self, response: httpx.Response, part: _Part, expected: int) -> None:
        answer = httpx.Response(part.status, headers=part.headers, content=part.body, request=response.request)
        if part.status in _REFUSED_BEFORE_RUNNING:
            raise NotApplied(answer)
        if part.status in RETRYABLE_STATUSES:  # 502, 504: cut short, applied or not
            message, _ = fo_error_message(answer)
            raise OutcomeUnknown(
                SYSTEM,
                f"POST /$batch: its changeset was answered {part.status} ({message}); it may or may not have been "
                "applied, and was not sent again",
                method="POST",
                url="/$batch",
            )
        message, code = fo_error_message(answer)
        index = int(part.content_id) - 1 if part.content_id and part.content_id.isdigit() else None
        which = f"request {index + 1} of {expected}" if index is not None else "a request"
        raise ChangesetFailed(
            f"$batch changeset refused at {which}, nothing of it applied: {message}",
            status=part.status,
            code=code,
            index=index,
            server_message=message,
        )


# An answer's status line starts a line of the multipart body; a JSON body cannot (it escapes newlines).
# The reason phrase after the code is optional (RFC 9112 §4), and so, in practice, is the space before it.
_STATUS_LINE = re.compile(rb"(?m)^HTTP/1\.[01] (\d{3})\b")
# A changeset's own answer that says it was refused before it ran (throttled, unavailable): sent again.
_REFUSED_BEFORE_RUNNING = frozenset({429, 503})
# Statuses of a whole $batch answer that refuse its one changeset: nothing of it was applied.
_BATCH_REFUSED = frozenset({400, 409, 412, 422})


@dataclass(frozen=True)
class _Part:
    status: int
    content_id: str | None
    headers: dict[str, str]
    body: bytes


def _multipart(batch: str, changeset: str, service_root: str, requests: Sequence[BatchRequest]) -> bytes:
    """An OData 4.0 multipart $batch holding one changeset; parts address resources by absolute URL."""
    out = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode()]
    for content_id, request in enumerate(requests, start=1):
        body = json_body(request.body) if request.body is not None else b""
        out.append(
            (
                f"--{changeset}\r\n"
                "Content-Type: application/http\r\n"
                "Content-Transfer-Encoding: binary\r\n"
                f"Content-ID: {content_id}\r\n\r\n"
                f"{request.method} {service_root}/{request.path} HTTP/1.1\r\n"
                "Content-Type: application/json; odata.metadata=minimal\r\n"
                "Accept: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
            + b"\r\n"
        )
    out.append(f"--{changeset}--\r\n--{batch}--\r\n".encode())
    return b"".join(out)


def _refusals(response: httpx.Response, expected: int) -> list[_Part]:
    """The refused requests of a changeset's answer; ValueError when it names none (cut short, garbled)."""
    try:
        parts = _http_parts(response)
    except (ImproperBodyPartContentException, NonMultipartContentTypeException) as exc:
        raise ValueError(f"a multipart answer it cannot read ({exc})") from None
    failed = [p for p in parts if p.status >= 400]
    if not failed:
        raise ValueError(f"{len(parts)} answers to a changeset of {expected} requests, none of them a refusal")
    return failed


def _http_parts(response: httpx.Response) -> list[_Part]:
    """Every application/http answer in a $batch response, changesets opened, in order."""
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("multipart/"):
        raise RequestFailedError(SYSTEM, f"$batch answered {content_type or 'no Content-Type'}, not multipart")
    parts: list[_Part] = []
    for part in MultipartDecoder(response.content, content_type).parts:
        inner_type = (part.headers.get(b"Content-Type") or b"").decode()
        if inner_type.startswith("multipart/"):
            for inner in MultipartDecoder(part.content, inner_type).parts:
                parts.append(_http_answer(inner.content, _header(inner, b"Content-ID")))
        else:
            parts.append(_http_answer(part.content, _header(part, b"Content-ID")))
    return parts


def _header(part, name: bytes) -> str | None:
    value = part.headers.get(name)
    return value.decode().strip() if value else None


def _http_answer(content: bytes, content_id: str | None) -> _Part:
    head, _, body = content.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    fields = status_line.split(b" ", 2)
    status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 500
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.decode(errors="replace").strip().lower()] = value.decode(errors="replace").strip()
    # The answer may carry the request's Content-ID inside the HTTP part.
    return _Part(status, content_id or headers.get("content-id"), headers, body)
