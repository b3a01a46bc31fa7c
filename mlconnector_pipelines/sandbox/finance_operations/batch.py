"""OData 4.0 multipart `$batch`: parse the parts, run them, write the multipart answer.

Parts outside a changeset run on their own. A changeset is atomic: the model is snapshotted,
its requests run in order, and on the first failure the model is restored and the changeset is
answered by that request's error alone (OData 4.0 §11.7.4). Processing stops after a failed
part unless the client sends `Prefer: odata.continue-on-error` (the ASP.NET OData default F&O
runs on). `Content-ID` values name earlier requests of the same changeset: a URL `$1/...` starts
at the entity request 1 created.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote, urlsplit

from ..core.faults import FaultRule
from .models import FinanceOperationsModel
from .odata import ODATA_EXCEPTION, ODataRequest, ODataResponse, ODataService, error_response

MAX_OPERATIONS = 5000  # service-protection-api-limits.md: "A batch can contain up to 5000 operations"
CHANGESET_METHODS = ("POST", "PUT", "PATCH", "MERGE", "DELETE")


class BatchSyntaxError(ValueError):
    pass


@dataclass
class Part:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None = None


@dataclass
class Changeset:
    parts: list[Part] = field(default_factory=list)


# -- reading --------------------------------------------------------------------------------------


def boundary_of(content_type: str) -> str | None:
    match = re.search(r'boundary\s*=\s*("([^"]+)"|[^;\s]+)', content_type, re.IGNORECASE)
    if match is None:
        return None
    return match.group(2) or match.group(1)


def _split(body: bytes, boundary: str) -> list[bytes]:
    delimiter = re.compile(rb"(?:\A|\r?\n)--" + re.escape(boundary.encode()) + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    chunks, start = [], None
    for match in delimiter.finditer(body):
        if start is not None:
            chunks.append(body[start : match.start()])
        if match.group(1):
            return chunks
        start = match.end()
    raise BatchSyntaxError(f"The batch body does not end with the closing boundary '--{boundary}--'.")


def _head_and_body(chunk: bytes) -> tuple[dict[str, str], bytes]:
    """Header lines up to the first blank line, and what follows it (a chunk may have no headers)."""
    blank = re.match(rb"\r?\n", chunk)
    if blank is not None:
        return {}, chunk[blank.end() :]
    match = re.search(rb"\r?\n\r?\n", chunk)
    head, body = (chunk[: match.start()], chunk[match.end() :]) if match else (chunk, b"")
    headers = {}
    for line in head.decode("utf-8").splitlines():
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers, body


def _http_request(chunk: bytes, mime: dict[str, str]) -> Part:
    match = re.match(rb"\s*([A-Z]+) (\S+)(?: HTTP/1\.[01])?[ \t]*(?:\r?\n|\Z)", chunk)
    if match is None:
        raise BatchSyntaxError("A batch part does not start with an HTTP request line.")
    headers, body = _head_and_body(chunk[match.end() :])
    content_id = mime.get("content-id") or headers.get("content-id")
    return Part(match.group(1).decode(), match.group(2).decode(), headers, body, content_id)


def parse_batch(body: bytes, boundary: str) -> list[Part | Changeset]:
    items: list[Part | Changeset] = []
    for chunk in _split(body, boundary):
        mime, content = _head_and_body(chunk)
        kind = mime.get("content-type", "").lower()
        if kind.startswith("multipart/mixed"):
            inner = boundary_of(mime["content-type"])
            if inner is None:
                raise BatchSyntaxError("A changeset has no boundary.")
            changeset = Changeset()
            for request_chunk in _split(content, inner):
                request_mime, request = _head_and_body(request_chunk)
                changeset.parts.append(_http_request(request, request_mime))
            items.append(changeset)
        elif kind.startswith("application/http"):
            items.append(_http_request(content, mime))
        else:
            raise BatchSyntaxError(f"A batch part has the content type '{kind}'; expected application/http.")
    return items


# -- writing --------------------------------------------------------------------------------------


def _http_response(response: ODataResponse, content_id: str | None, reason_phrase: bool = True) -> bytes:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    status = HTTPStatus(response.status)
    lines += ["", f"HTTP/1.1 {status.value} {status.phrase}" if reason_phrase else f"HTTP/1.1 {status.value}"]
    headers = dict(response.headers)
    if response.media_type and response.body:
        headers["Content-Type"] = response.media_type
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + response.body


def _multipart(boundary: str, parts: list[bytes]) -> bytes:
    if not parts:
        return f"--{boundary}--\r\n".encode()
    separator = f"\r\n--{boundary}\r\n".encode()
    return f"--{boundary}\r\n".encode() + separator.join(parts) + f"\r\n--{boundary}--\r\n".encode()


# -- running --------------------------------------------------------------------------------------


@dataclass
class BatchRunner:
    service: ODataService
    model: FinanceOperationsModel
    counts: Counter

    def run(self, request: ODataRequest, fault: FaultRule | None = None) -> ODataResponse:
        boundary = boundary_of(request.headers.get("content-type", ""))
        if not request.headers.get("content-type", "").lower().startswith("multipart/mixed") or boundary is None:
            return error_response(
                400,
                "The batch request must have a 'Content-Type' header of 'multipart/mixed' with a boundary.",
                ODATA_EXCEPTION,
            )
        try:
            items = parse_batch(request.body, boundary)
        except (BatchSyntaxError, UnicodeDecodeError) as exc:
            return error_response(400, str(exc), ODATA_EXCEPTION)
        operations = sum(len(i.parts) if isinstance(i, Changeset) else 1 for i in items)
        if operations > MAX_OPERATIONS:
            return error_response(
                400,
                "The current batch message contains too many parts. Only batch messages with a maximum number of "
                f"'{MAX_OPERATIONS}' query operations and change sets are allowed ({operations} operations sent).",
                ODATA_EXCEPTION,
            )
        self.counts["batch_operations"] += operations
        keep_going = "odata.continue-on-error" in request.headers.get("prefer", "")
        dialect = self.service.dialect
        answers = []
        for item in items:
            if isinstance(item, Changeset) and fault is not None and fault.kind == "changeset_status":
                if fault.value == "after_commit":  # a service timing out after the changeset committed
                    self._changeset(item, request)
                answer, ok, fault = self._unavailable(item, fault), False, None
            elif isinstance(item, Changeset):
                answer, refusal = self._changeset(item, request)
                ok = refusal is None
                if refusal is not None and len(items) == 1 and dialect.refused_changeset == "whole_batch":
                    return refusal
            else:
                answer, ok = self._single(item, request)
            answers.append(answer)
            if not ok and not keep_going:
                break
        boundary_out = f"batchresponse_{uuid.uuid4()}"
        return ODataResponse(
            200,
            _multipart(boundary_out, answers),
            {"OData-Version": "4.0"},
            media_type=f"multipart/mixed; boundary={boundary_out}",
        )

    def _single(self, part: Part, batch: ODataRequest) -> tuple[bytes, bool]:
        response = self.service.execute(self._request(part, batch, {}))
        return self._answer(response, part.content_id), response.status < 400

    def _answer(self, response: ODataResponse, content_id: str | None) -> bytes:
        return _http_response(response, content_id, self.service.dialect.reason_phrase)

    def _unavailable(self, changeset: Changeset, fault: FaultRule) -> bytes:
        """The `changeset_status` fault: the changeset is answered `fault.status` without being run."""
        self.counts[f"changeset_{fault.status}"] += 1
        text = "The service is unavailable." if fault.status == 503 else "Injected by the sandbox."
        response = error_response(fault.status, text, message=text)
        if fault.retry_after is not None:
            response.headers["Retry-After"] = f"{fault.retry_after:g}"
        return self._answer(response, changeset.parts[0].content_id if changeset.parts else None)

    def _changeset(self, changeset: Changeset, batch: ODataRequest) -> tuple[bytes, ODataResponse | None]:
        """The changeset's answer, and the refused request's response when it was not applied."""
        snapshot = self.model.snapshot()
        created: dict[str, str] = {}
        answers = []
        for part in changeset.parts:
            response = self._in_changeset(part, batch, created)
            if response.status >= 400:
                self.model.restore(snapshot)
                self.counts["changesets_refused"] += 1
                return self._answer(response, part.content_id), response
            location = response.headers.get("Location", "")
            if part.content_id and location.startswith(batch.root + "/"):
                created[part.content_id] = location[len(batch.root) + 1 :]
            answers.append(self._answer(response, part.content_id))
        self.counts["changesets_committed"] += 1
        inner = f"changesetresponse_{uuid.uuid4()}"
        head = f"Content-Type: multipart/mixed; boundary={inner}\r\n\r\n".encode()
        return head + _multipart(inner, answers), None

    def _in_changeset(self, part: Part, batch: ODataRequest, created: dict[str, str]) -> ODataResponse:
        if part.method.upper() not in CHANGESET_METHODS:
            return error_response(
                400,
                f"An invalid HTTP method '{part.method}' was detected for a request in a change set. Requests in "
                "change sets only support the HTTP methods 'POST', 'PUT', 'DELETE', and 'PATCH'.",
                ODATA_EXCEPTION,
            )
        try:
            request = self._request(part, batch, created)
        except KeyError as exc:
            return error_response(400, f"The Content-ID '{exc.args[0]}' names no earlier request of this change set.")
        try:
            return self.service.execute(request)
        except Exception as exc:  # an unexpected failure still leaves nothing of the changeset stored
            return error_response(500, f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _request(part: Part, batch: ODataRequest, created: dict[str, str]) -> ODataRequest:
        """The part's URL below the service root: absolute, root-relative, relative, or `$<Content-ID>/...`."""
        split = urlsplit(part.url)
        path = unquote(split.path)
        root_path = urlsplit(batch.root).path
        if path.startswith(root_path + "/"):
            path = path[len(root_path) + 1 :]
        elif path.startswith("$") and not path.startswith(("$metadata", "$batch")):
            reference, _, rest = path[1:].partition("/")
            path = created[reference] + ("/" + rest if rest else "")
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        return ODataRequest(part.method.upper(), path, params, part.headers, part.body, batch.root)
