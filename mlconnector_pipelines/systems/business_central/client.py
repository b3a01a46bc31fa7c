"""Business Central API v2.0 client: companies, windowed extraction by lastModifiedDateTime, counts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urljoin

import httpx
import pyarrow as pa

from ...core.errors import ConfigError, RequestFailedError
from ...core.http import ThrottledClient
from ...core.odata import (
    NESTED_NEXT_LINK,
    complete_expanded,
    datetime_literal,
    half_open_window_filter,
    json_body,
    page_and_next_link,
    read_page_table,
    string_literal,
)
from ...core.paginate import NextLinkPages, OverlappingNextLinkPages
from ...core.tls import ssl_context
from ..entra import EntraTokenProvider
from .catalog import BcEntity
from .config import BusinessCentralConfig

SYSTEM = "Business Central"
KEYS_ASKED_ONE_BY_ONE = 100  # more keys to confirm than this: one more read of every key instead


class BusinessCentralClient:
    """One BC environment, reached with an Entra app's token for BC's API scope."""

    def __init__(self, cfg: BusinessCentralConfig, *, client_secret: str):
        self.base_path = f"/v2.0/{cfg.auth.tenant_id}/{quote(cfg.environment)}/api/v2.0"
        self.page_size = cfg.page_size
        self.tokens = EntraTokenProvider.for_section(
            cfg, system=SYSTEM, client_secret=client_secret, name="business_central"
        )
        self.http = ThrottledClient(
            SYSTEM,
            base_url=cfg.api_base_url,
            policy=cfg.http,
            auth=self.tokens,
            verify=ssl_context(cfg.ca_bundle, what="business_central"),
            secrets=(client_secret,),
            headers={"Accept": "application/json"},
        )

    def close(self) -> None:
        self.http.close()
        self.tokens.close()

    # -- writes (no idempotency header: never repeated when the outcome is unknown) -------------

    def create(self, company_id: str, entity_set: str, record: dict, read: Callable[[dict], Any] = lambda r: r) -> Any:
        """POST a new record (lines inside it are created with it, atomically: a deep insert); `read` of the
        record BC saved. Raises OutcomeUnknown when BC may have created it, or created it and answered with a
        body that does not say what (`read` fails): find it by its key first."""
        response = self.http.request(
            "POST",
            f"{self.base_path}/companies({company_id})/{entity_set}",
            content=json_body(record),
            headers={"Content-Type": "application/json"},
        )
        return self.http.read_written(response, lambda answer: read(self.parse(answer)))

    def records(self, company_id: str, entity_set: str) -> list[dict]:
        """Every record of a small set-up entity (payment terms, currencies, the company's information), on
        every page BC serves them in: a currency on a later page is set up all the same."""
        pages = NextLinkPages(self.http, f"{self.base_path}/companies({company_id})/{entity_set}",
                              self._records_and_next_link)  # fmt: skip
        return [record for page in pages for record in page]

    def find(
        self, company_id: str, entity_set: str, field: str, value: str, *, expand: str | None = None
    ) -> list[dict]:
        """Records whose `field` equals `value` (a natural key: a number, an externalDocumentNumber), from every
        page: a lookup that missed a document on a later page would have it written twice."""
        params = {"$filter": f"{field} eq {string_literal(value)}"}
        if expand:
            params["$expand"] = expand
        navigations = [navigation.strip() for navigation in expand.split(",")] if expand else []

        def read(response: httpx.Response) -> tuple[list[dict], str | None]:
            records, next_link = self._records_and_next_link(response)
            for navigation in navigations:  # nested links resolve against the page they came in
                self._complete_lines(records, navigation, str(response.url))
            return records, next_link

        pages = NextLinkPages(self.http, f"{self.base_path}/companies({company_id})/{entity_set}", read, params)
        return [record for page in pages for record in page]

    def _complete_lines(self, records: list[dict], navigation: str, page_url: str) -> None:
        """Each record's `navigation` with every line: BC may page an expanded collection, leaving the rest
        behind `<navigation>@odata.nextLink` (see core.odata.complete_expanded); the link is followed to its end."""
        for record in records:
            link = record.pop(navigation + NESTED_NEXT_LINK, None)
            if link:
                lines = record.setdefault(navigation, [])
                for page in NextLinkPages(self.http, urljoin(page_url, link), self._records_and_next_link):
                    lines.extend(page)

    def update(self, company_id: str, entity_set: str, record_id: str, changes: dict, *, etag: str) -> dict:
        """PATCH a record as it was when read (`etag`); BC refuses it (409 Request_EntityChanged) if it changed since."""
        response = self.http.request(
            "PATCH",
            f"{self.base_path}/companies({company_id})/{entity_set}({record_id})",
            content=json_body(changes),
            headers={"Content-Type": "application/json", "If-Match": etag},
            idempotent=True,  # with If-Match a repeat is refused (409) rather than applied twice
        )
        return self.parse(response)

    def action(self, company_id: str, entity_set: str, record_id: str, name: str) -> None:
        """A bound action, e.g. Microsoft.NAV.post. Not idempotent: OutcomeUnknown when its answer was lost."""
        self.http.request("POST", f"{self.base_path}/companies({company_id})/{entity_set}({record_id})/{name}")

    def parse(self, response: httpx.Response) -> Any:
        """A JSON answer with its numbers as Decimal (amounts exact)."""
        if not response.content:
            return {}
        try:
            return json.loads(response.content, parse_float=Decimal)
        except ValueError as exc:
            raise self.http.malformed(response, f"malformed JSON: {exc}") from None

    # -- companies ------------------------------------------------------------------------------

    def companies(self) -> list[dict]:
        pages = NextLinkPages(
            self.http,
            f"{self.base_path}/companies",
            self._records_and_next_link,
            headers={"Prefer": f"odata.maxpagesize={self.page_size}"},
        )
        return [company for page in pages for company in page]

    def _records_and_next_link(self, response: httpx.Response) -> tuple[list[dict], str | None]:
        return page_and_next_link(self.http, response, self.parse(response))

    def resolve_companies(self, wanted: list[str]) -> list[dict]:
        """Configured companies by id or name; all of them when none are configured."""
        available = self.companies()
        if not wanted:
            return available
        by_key = {c["id"].lower(): c for c in available} | {c["name"]: c for c in available}
        missing = [w for w in wanted if w not in by_key and w.lower() not in by_key]
        if missing:
            names = ", ".join(f"'{c['name']}'" for c in available) or "none"
            raise ConfigError(
                f"business_central.companies: {missing} not found in this environment; available: {names}"
            )
        return [by_key.get(w) or by_key[w.lower()] for w in wanted]

    # -- extraction -------------------------------------------------------------------------------

    def pages(self, company_id: str, entity: BcEntity, start: datetime, end: datetime) -> Iterator[pa.Table]:
        """Pages of records modified in `[start, end)` as Arrow tables, children expanded (list columns)."""
        params = {"$filter": half_open_window_filter(entity.modified_field, start, end)}
        if entity.children:
            params["$expand"] = ",".join(child.navigation for child in entity.children)
        headers = {"Prefer": f"odata.maxpagesize={self.page_size}"}
        read_fields = entity.read_fields(text_fields=(entity.modified_field,))
        # a child's declared line fields, to read the further lines of a paged expanded collection alike
        line_fields = {f.name: list(f.type.value_type) for f in read_fields if pa.types.is_list(f.type)}

        def read(response: httpx.Response) -> tuple[pa.Table, str | None]:
            return read_page_table(self.http, response, read_fields, key=entity.key)

        pages = OverlappingNextLinkPages(
            self.http, self._entity_path(company_id, entity), read, entity.key, entity.modified_field, params, headers
        )
        for page, page_url in pages:
            yield complete_expanded(self.http, page, line_fields, page_url=page_url, headers=headers)

    def keys(self, company_id: str, entity: BcEntity) -> set[str]:
        """Every record's key. On a server whose next links resume at a visible offset, a record deleted while
        they are read cannot make another go unlisted (see OverlappingNextLinkPages; `held` covers the rest)."""
        read_fields = [pa.field(entity.key, pa.string())]
        found: set[str] = set()
        for page, _ in OverlappingNextLinkPages(
            self.http,
            self._entity_path(company_id, entity),
            lambda response: read_page_table(self.http, response, read_fields, key=entity.key),
            entity.key,
            params={"$select": entity.key},
            headers={"Prefer": f"odata.maxpagesize={self.page_size}"},
        ):
            if page.num_rows:
                found.update(page.column(entity.key).to_pylist())
        return found

    def held(self, company_id: str, entity: BcEntity, keys: Sequence[str]) -> set[str]:
        """Of keys a read of every key did not list, those BC still holds. That read cannot vouch for a key it
        did not list: a next link that resumes at an offset hidden in its opaque token passes over a record
        when another is deleted meanwhile. A few keys are asked for one by one (404: gone); more than
        `KEYS_ASKED_ONE_BY_ONE` (a purge, or orders BC removed when it invoiced them) by a second read of every
        key, as two reads passing over the same live key is all but impossible."""
        if len(keys) > KEYS_ASKED_ONE_BY_ONE:
            return set(keys) & self.keys(company_id, entity)
        there = set()
        for key in keys:
            try:
                self.http.request(
                    "GET", f"{self._entity_path(company_id, entity)}({key})", params={"$select": entity.key}
                )
            except RequestFailedError as exc:
                if exc.status != 404:
                    raise
                continue
            there.add(key)
        return there

    def count(
        self,
        company_id: str,
        entity: BcEntity,
        *,
        modified_from: datetime | None = None,
        modified_before: datetime | None = None,
    ) -> int:
        """The server's `$count` of records last modified in `[modified_from, modified_before)`."""
        field = entity.modified_field
        bounds = [f"{field} ge {datetime_literal(modified_from)}"] if modified_from else []
        bounds += [f"{field} lt {datetime_literal(modified_before)}"] if modified_before else []
        params = {"$filter": " and ".join(bounds)} if bounds else None
        response = self.http.request("GET", f"{self._entity_path(company_id, entity)}/$count", params=params)
        try:
            return int(response.text.strip().lstrip("\ufeff"))
        except ValueError:
            raise self.http.malformed(response, "a $count that is not a number") from None

    def _entity_path(self, company_id: str, entity: BcEntity) -> str:
        return f"{self.base_path}/companies({company_id})/{entity.entity_set}"
