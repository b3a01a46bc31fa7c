"""Acumatica contract-based REST client: the configured endpoint version, wrapped values, windows in slices.

The endpoint version is part of every URL and must be one the site publishes: a wrong one is a
configuration error naming the version asked and the versions the site lists (`GET /entity`),
never retried. Reads come back as JSON arrays (no server-driven paging, no documented order, no
count): a window is read in slices (core.paginate.SlicedWindowPages) after a light scan of each
record's (modified, id). Writes are `PUT` (insert or update matched by key); a field Acumatica
refuses comes back with an `error` on it, which RecordRefused names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ...core.errors import ConfigError, RecordRefused, RequestFailedError
from ...core.http import ThrottledClient
from ...core.odata import json_body, page_table
from ...core.paginate import SlicedWindowPages
from ...core.tls import ssl_context
from ...core.windows import utc_moments
from .auth import SYSTEM, CookieSession, OAuthTokens
from .config import AcumaticaConfig
from .values import field_errors, plain_value, unwrap, unwrap_table, wrap

ID = "id"


def acumatica_error_message(response: httpx.Response) -> tuple[str, str | None]:
    """(message, code) of an Acumatica answer: the HttpError's exceptionMessage says what went wrong."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return (response.text[:300] or response.reason_phrase, None)
    if isinstance(body, dict):
        if body.get("modelState"):
            details = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in body["modelState"].items())
            return (f"{body.get('message') or 'The request is invalid.'} {details}", None)
        errors = field_errors(body)
        if errors:
            return ("; ".join(errors), None)
        message = (
            body.get("exceptionMessage") or body.get("message") or body.get("error_description") or body.get("error")
        )
        return (str(message or response.text[:300]), str(body.get("exceptionType") or "") or None)
    return (response.text[:300], None)


def datetimeoffset(moment: datetime) -> str:
    """A `datetimeoffset'…'` literal in UTC (Acumatica's $filter takes OData v3 literals)."""
    if moment.tzinfo is None:
        raise ValueError("datetime literals must be timezone-aware")
    return f"datetimeoffset'{moment.astimezone(UTC).isoformat(timespec='microseconds')}'"


def modified_in(field: str, start: datetime, end: datetime) -> str:
    """The `$filter` of records whose `field` stamp is in the half-open `[start, end)`."""
    return f"{field} ge {datetimeoffset(start)} and {field} lt {datetimeoffset(end)}"


def text_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


class AcumaticaClient:
    def __init__(self, cfg: AcumaticaConfig, *, password: str, client_secret: str | None = None):
        self.cfg = cfg
        verify = ssl_context(cfg.ca_bundle, what="acumatica")
        self._auth_http = httpx.Client(verify=verify, timeout=httpx.Timeout(cfg.http.timeout_seconds))
        if cfg.auth.mode == "oauth":
            self.auth: OAuthTokens | CookieSession = OAuthTokens(
                self._auth_http,
                cfg.base_url,
                cfg.auth,
                client_secret=client_secret or "",
                password=password,
                policy=cfg.http,
            )
        else:
            self.auth = CookieSession(
                self._auth_http, cfg.base_url, cfg.auth, tenant=cfg.tenant, password=password, policy=cfg.http
            )
        self.http = ThrottledClient(
            SYSTEM,
            base_url=cfg.endpoint_url,
            policy=cfg.http,
            auth=self.auth,
            verify=verify,
            secrets=(password, client_secret),
            headers={"Accept": "application/json"},
            error_message=acumatica_error_message,
        )
        self._version_checked = False
        self.details_read_by_id = 0  # records a list answered without their details, read again alone

    def close(self) -> None:
        """Signs out first: a seat of the licence is held until then."""
        try:
            self.auth.close()
        finally:
            self.http.close()
            self._auth_http.close()

    def __enter__(self) -> AcumaticaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the endpoint version ---------------------------------------------------------------------

    def published_versions(self) -> list[str] | None:
        """The versions of the configured endpoint the site lists at `GET /entity`; None if it lists none."""
        try:
            response = self._auth_http.get(f"{self.cfg.base_url}/entity", headers={"Accept": "application/json"})
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            endpoints = orjson.loads(response.content).get("endpoints") or []
        except (orjson.JSONDecodeError, AttributeError):
            return None
        return sorted({e.get("version") for e in endpoints if e.get("name") == self.cfg.endpoint and e.get("version")})

    def check_version(self) -> None:
        """Raise ConfigError (never retried) when the site does not publish the configured endpoint version."""
        if self._version_checked:
            return
        published = self.published_versions()
        if published is not None and self.cfg.version not in published:
            raise self._wrong_version(published)
        self._version_checked = published is not None

    def _wrong_version(self, published: list[str] | None) -> ConfigError:
        listed = f"; the site publishes {', '.join(published)}" if published else ""
        return ConfigError(
            f"acumatica.version: the site has no {self.cfg.endpoint}/{self.cfg.version} endpoint{listed}. Set "
            "acumatica.version to the endpoint version of the customer's release (Web Service Endpoints, SM207060)"
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except RequestFailedError as exc:
            if exc.status == 404 and not self._version_checked:
                # A 404 for an endpoint or entity is how a wrong version answers: say so, with the versions.
                # A site that lists none leaves it open (a 404 may also be a record that does not exist).
                published = self.published_versions()
                if published is not None and self.cfg.version not in published:
                    raise self._wrong_version(published) from None
                self._version_checked = published is not None
            raise

    # -- reading ----------------------------------------------------------------------------------

    def records(
        self,
        entity: str,
        *,
        filter: str | None = None,
        select: Sequence[str] | None = None,
        expand: Sequence[str] = (),
        top: int | None = None,
        as_type: Any = None,
    ) -> list:
        """Records as plain values (amounts as Decimal), or each decoded as `as_type` (see `_typed`)."""
        response = self._request("GET", f"/{entity}", params=_params(filter, select, expand, top))
        if as_type is not None:
            return self._typed(response, list[as_type])
        records = self._json(response)
        if not isinstance(records, list):
            raise self.http.malformed(response, f"a {type(records).__name__} where a list of records belongs")
        return [unwrap(r) for r in records]

    def stamps(self, entity: str, modified_field: str, filter: str) -> list[tuple[datetime, str]]:
        """(modified, id) of every record matching `filter` that has a stamp: one light request (`$select` of
        the stamp), read without the general unwrapping, which cost a scan of 20,000 records ~0.15 s."""
        response = self._request("GET", f"/{entity}", params=_params(filter, [modified_field], (), None))
        try:
            found = [(plain_value(record.get(modified_field)), record[ID]) for record in orjson.loads(response.content)]
        except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:
            raise self.http.malformed(response, f"a scan it cannot read ({exc!r})") from None
        return [(_moment(stamp), str(key)) for stamp, key in found if stamp]

    def record(self, entity: str, keys: Sequence[str], *, expand: Sequence[str] = (), as_type: Any = None) -> Any:
        """One record by its key values (plain values, or decoded as `as_type`); None when there is none."""
        response = self._one(entity, keys, expand)
        return None if response is None else self._answer(response, as_type)

    def _one(self, entity: str, keys: Sequence[str], expand: Sequence[str]) -> httpx.Response | None:
        """The answer for one record by its key values or id; None when there is none."""
        path = "/".join(quote(str(k), safe="") for k in keys)
        try:
            return self._request("GET", f"/{entity}/{path}", params=_params(None, None, expand, None))
        except RequestFailedError as exc:
            # Acumatica answers a key that matches nothing 500 "No entity satisfies the condition"; a site may
            # answer 404. (A 404 for a wrong endpoint version became a ConfigError in `_request`.)
            if exc.status == 404 or (exc.status == 500 and "No entity satisfies" in str(exc)):
                return None
            raise

    def read_table(self, response: httpx.Response, read_fields: Sequence[pa.Field]) -> pa.Table:
        """An answer's records as an Arrow table read in C++ (wrapped values unwrapped column by column)."""
        return self._records_table(response.content, response, read_fields)

    def _records_table(self, content: bytes, response: httpx.Response, read_fields: Sequence[pa.Field]) -> pa.Table:
        try:
            records, _ = page_table(b'{"value":' + content + b"}", read_fields)
        except ValueError as exc:
            raise self.http.malformed(response, f"records it cannot read: {exc}") from None
        return unwrap_table(records)

    def read_slice(
        self, entity: str, response: httpx.Response, read_fields: Sequence[pa.Field], details: Sequence[str]
    ) -> pa.Table:
        """A slice's records with the `details` they were asked for (`$expand`).

        Some sites answer a list GET without the expanded details and fill them only for a record read
        alone (acumatica-facts §12). Loaded as they came, every line of the window was missing and, on a
        re-run, the lines loaded before were replaced by none. A record whose detail list is absent (or
        null) was not given its lines: it is read again by its id. A site may also answer them `[]`,
        which for one record cannot be told from a document without lines; but where no record of the
        slice has a single line, the slice's records are read again one by one too (a slice of documents
        that truly have none costs those requests, counted in `details_read_by_id`). Where the site gives
        the details, nothing more is asked. A record deleted before it is read again is left out (it is
        gone; the reconciliation ends it); one the site answers without its details even read alone stops
        the load, naming it, rather than loading it without its lines.
        """
        page = self.read_table(response, read_fields)
        unanswered = without_details(page, details)
        if not unanswered:
            return page
        try:
            records = msgspec.json.decode(response.content, type=list[msgspec.Raw])
        except msgspec.DecodeError as exc:
            raise self.http.malformed(response, f"records it cannot read: {exc}") from None
        ids = page.column(ID).to_pylist()
        for index in unanswered:
            alone = self._one(entity, [str(ids[index])], details)
            self.details_read_by_id += 1
            if alone is None:
                records[index] = None
                continue
            if without_details(self._records_table(b"[" + alone.content + b"]", alone, read_fields), details, True):
                raise self.http.malformed(
                    alone, f"{entity} {ids[index]} without its {', '.join(details)}, though they were asked for"
                )
            records[index] = msgspec.Raw(alone.content)
        content = b"[" + b",".join(bytes(r) for r in records if r is not None) + b"]"
        return self._records_table(content, response, read_fields)

    def window(
        self,
        entity: str,
        modified_field: str,
        start: datetime,
        end: datetime,
        *,
        expand: Sequence[str],
        read_fields: Sequence[pa.Field],
    ) -> Iterator[pa.Table]:
        """The records modified in `[start, end)`, in slices of at most `page_size`."""

        def bounded(lower: datetime | None, upper: datetime | None) -> str:
            return modified_in(modified_field, lower or start, upper or end)

        return iter(
            SlicedWindowPages(
                scan=lambda: self.stamps(entity, modified_field, bounded(None, None)),
                ask=lambda lower, upper: self._request(
                    "GET", f"/{entity}", params=_params(bounded(lower, upper), None, expand, None)
                ),
                read=lambda response: self.read_slice(entity, response, read_fields, expand),
                key=ID,
                modified=modified_field,
                page_size=self.cfg.page_size,
            )
        )

    def _json(self, response: httpx.Response) -> Any:
        """An answer's JSON, amounts as Decimal; a body that is not JSON (a proxy's page) names the request."""
        try:
            return json.loads(response.content, parse_float=Decimal)
        except ValueError as exc:
            raise self.http.malformed(response, f"malformed JSON: {exc}") from None

    def _answer(self, response: httpx.Response, as_type: Any) -> Any:
        """One record of an answer: plain values, or decoded as `as_type`."""
        return self._typed(response, as_type) if as_type is not None else unwrap(self._json(response))

    def _typed(self, response: httpx.Response, as_type: Any) -> Any:
        """The answer decoded by type: msgspec Structs whose fields are `WrappedText` / `WrappedAmount` read
        only the fields they name (the rest is skipped unparsed) and amounts straight into Decimal."""
        try:
            return _decoder(as_type).decode(response.content)
        except msgspec.DecodeError as exc:  # a validation error too: a field of another shape
            raise self.http.malformed(response, f"an answer it cannot read ({exc})") from None

    # -- writing ----------------------------------------------------------------------------------

    def put(
        self,
        entity: str,
        record: dict,
        *,
        expand: Sequence[str] = (),
        key: str = "",
        by_key: bool = False,
        as_type: Any = None,
    ) -> Any:
        """Insert or update `record` (plain values; wrapped here); the saved record as plain values, or decoded
        as `as_type`. `by_key`: the PUT changes a record that exists, matched by its id or key fields, so sending
        it twice does what sending it once does (a lost answer may be sent again). Never an insert: a key
        Acumatica numbers itself ignores the one sent, so an insert sent twice is two records."""
        try:
            response = self._request(
                "PUT",
                f"/{entity}",
                params=_params(None, None, expand, None),
                content=json_body(wrap(record)),
                headers={"Content-Type": "application/json"},
                idempotent=by_key,
            )
        except RequestFailedError as exc:
            # 422: a field's value refused; 400: one Acumatica could not read (e.g. "Yes" for a boolean). Either
            # way this record is refused, nothing of it saved: it is named, and the next records go on.
            if exc.status in (400, 422):
                raise RecordRefused(SYSTEM, entity, key, str(exc.server_message).split("; ")) from None
            raise
        return self.http.read_written(response, lambda answer: self._answer(answer, as_type))

    def action(self, entity: str, action: str, keys: dict, *, wait_seconds: float = 600.0) -> None:
        """Run an action (e.g. ReleaseJournalTransaction) and wait until Acumatica says it is done.

        The POST is a write: a lost answer raises OutcomeUnknown (the caller checks the record's state)."""
        response = self._request(
            "POST",
            f"/{entity}/{action}",
            content=json_body({"entity": wrap(keys)}),
            headers={"Content-Type": "application/json"},
        )
        location = response.headers.get("Location")
        deadline = time.monotonic() + wait_seconds
        delay = 0.1
        while response.status_code == 202 and location:
            if time.monotonic() > deadline:
                raise RequestFailedError(SYSTEM, f"{action} still running after {wait_seconds:.0f} s ({location})")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            url = location if location.startswith("http") else _site_relative(self.cfg.base_url, location)
            response = self.http.request("GET", url)


@cache
def _decoder(as_type: Any) -> msgspec.json.Decoder:
    return msgspec.json.Decoder(as_type)


def _site_relative(base_url: str, location: str) -> str:
    """A Location the site gives relative to its root or to itself (…/entity/…)."""
    if location.startswith("/"):
        origin = "/".join(base_url.split("/")[:3])
        site = base_url[len(origin) :]
        return origin + (location if location.startswith(site + "/") or not site else site + location)
    return f"{base_url}/{location}"


def _params(filter: str | None, select: Sequence[str] | None, expand: Sequence[str], top: int | None) -> dict | None:
    params: dict[str, str] = {}
    if filter:
        params["$filter"] = filter
    if select:
        params["$select"] = ",".join(select)
    if expand:
        params["$expand"] = ",".join(expand)
    if top is not None:
        params["$top"] = str(top)
    return params or None


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def without_details(page: pa.Table, details: Sequence[str], only_absent: bool = False) -> list[int]:
    """The rows of a list answer not given their `details`: the list absent or null, or, unless
    `only_absent`, empty on every row of a page where no row has a line (see AcumaticaClient.read_slice)."""
    if not details or page.num_rows == 0:
        return []
    missing = pa.repeat(pa.scalar(False), page.num_rows)
    for name in details:
        if name not in page.column_names:  # no record carried the field at all
            return list(range(page.num_rows))
        lines = pc.list_value_length(page.column(name))
        missing = pc.or_(missing, pc.is_null(lines))
        if not only_absent and not pc.sum(lines).as_py():
            missing = pc.or_(missing, pc.fill_null(pc.equal(lines, 0), False))
    return pc.indices_nonzero(missing).to_pylist()


def calendar_dates(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Business dates (a bill's `Date`) as the site wrote them: midnight of its own time zone, with its
    offset (`2026-03-01T00:00:00+10:00`). The date is the one written; converted to UTC, a site east of
    UTC had every document on the day before."""
    return pc.cast(pc.utf8_slice_codeunits(column, 0, 10), pa.date32())


def utc_text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Stamps as Acumatica wrote them (any offset) → canonical UTC text, which sorts and windows as time."""
    moments = utc_moments(column)
    return pc.strftime(moments, format="%Y-%m-%dT%H:%M:%SZ")  # %S of a microsecond unit prints its fraction
