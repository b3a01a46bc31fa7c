"""SAP Business One Service Layer client (/b1s/v1 OData v3 or /b1s/v2 OData v4).

Incremental reads: documents carry UpdateDate (a date) and UpdateTime (time of day, server
local) apart. The server filters on the date (inclusive); the client refines on (date, time),
converted to UTC, to the half-open window. Pages are read by key (`DocEntry gt <last>`), never
by `$skip`: a record changing while we page must not shift what the next page holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...core.catalog import SourceEntity
from ...core.errors import ConfigError, RequestFailedError
from ...core.http import ThrottledClient
from ...core.odata import read_page_table, string_literal
from ...core.paginate import KeysetPages
from ...core.tls import pinned_ssl_context, ssl_context
from ...core.windows import local_to_utc_micros
from .config import SapBusinessOneConfig
from .session import SYSTEM, ServiceLayerSession, session_expired

MODIFIED_AT = "UpdateDateTime"  # added by the client: UpdateDate + UpdateTime as a UTC timestamp
# A record updated on a day without a time of day (UpdateTime null) is placed at the end of that
# day: the window holding that moment cannot have closed before the record changed.
_END_OF_DAY = time(23, 59, 59)


class ServiceLayerClient:
    """One company database of a Service Layer, logged in on first use."""

    def __init__(self, cfg: SapBusinessOneConfig, *, company_db: str, password: str):
        base_url = cfg.base_url.rstrip("/")
        parts = urlsplit(base_url)
        self.version = parts.path.rsplit("/", 1)[-1]
        if parts.scheme != "https" or self.version not in ("v1", "v2") or "/b1s/" not in parts.path + "/":
            raise ConfigError(
                f"sap_business_one.base_url: expected https://<host>:<port>/b1s/v1 or /b1s/v2, got {cfg.base_url!r}"
            )
        if cfg.pinned_sha256:
            verify = pinned_ssl_context(
                parts.hostname,
                parts.port or 443,
                cfg.pinned_sha256,
                what="sap_business_one",
                system=SYSTEM,
                timeout_seconds=cfg.http.timeout_seconds,
            )
        else:
            verify = ssl_context(cfg.ca_bundle, what="sap_business_one")
        self.page_size = cfg.page_size
        self.timezone = ZoneInfo(cfg.server_timezone)
        base = base_url + "/"
        login_http = ThrottledClient(SYSTEM, base_url=base, policy=cfg.http, verify=verify, secrets=(password,))
        self.session = ServiceLayerSession(login_http, company_db=company_db, username=cfg.username, password=password)
        self._login_http = login_http
        self.http = ThrottledClient(
            SYSTEM,
            base_url=base,
            policy=cfg.http,
            verify=verify,
            auth=self.session,
            secrets=(password,),
            reauthenticate_on=session_expired,
        )

    def close(self) -> None:
        self.session.logout()
        self.http.close()
        self._login_http.close()

    def __enter__(self) -> ServiceLayerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pages(self, entity: SourceEntity, start: datetime, end: datetime) -> Iterator[pa.Table]:
        """Records updated in `[start, end)` as Arrow tables, each with `UpdateDateTime` (UTC, ISO)."""
        first_day = start.astimezone(self.timezone).date()
        last_day = (end - timedelta(microseconds=1)).astimezone(self.timezone).date()
        days = (
            f"UpdateDate ge {string_literal(first_day.isoformat())} and "
            f"UpdateDate le {string_literal(last_day.isoformat())}"
        )
        read_fields = entity.read_fields(text_fields=("UpdateDate",))

        def read(response):
            page, next_link = read_page_table(self.http, response, read_fields, _NEXT_LINK_KEYS, entity.key)
            try:
                moments = self._updated_at(page)
            except ValueError as exc:
                raise self.http.malformed(response, f"an UpdateDate or UpdateTime it cannot read: {exc}") from None
            return page.append_column(MODIFIED_AT, moments), next_link

        pages = KeysetPages(
            self.http,
            entity.entity_set,
            key=entity.key,
            conjunction=days,
            read=read,
            headers={"Prefer": f"odata.maxpagesize={self.page_size}"},
        )
        for page in _stamped(entity, pages):
            moments = page.column(MODIFIED_AT)
            in_window = pc.and_(
                pc.greater_equal(moments, pa.scalar(start, moments.type)),
                pc.less(moments, pa.scalar(end, moments.type)),
            )
            kept = page.filter(in_window)
            if kept.num_rows:
                # Whole seconds (the Service Layer's precision); %S of a finer unit prints its fraction.
                seconds = pc.cast(kept.column(MODIFIED_AT), pa.timestamp("s", tz="UTC"))
                stamps = pc.strftime(seconds, "%Y-%m-%dT%H:%M:%S.000Z")
                yield kept.set_column(kept.column_names.index(MODIFIED_AT), MODIFIED_AT, stamps)

    def keys(self, entity: SourceEntity) -> set[str]:
        """Every record's key, read by key ranges (the Service Layer's `$skip` would shift under deletions)."""

        def read(response):
            return read_page_table(self.http, response, (), _NEXT_LINK_KEYS, entity.key)

        found: set[str] = set()
        for page in KeysetPages(
            self.http,
            entity.entity_set,
            key=entity.key,
            conjunction=None,
            read=read,
            params={"$select": entity.key},
            headers={"Prefer": f"odata.maxpagesize={self.page_size}"},
        ):
            found.update(str(k) for k in page.column(entity.key).to_pylist())
        return found

    def _updated_at(self, page: pa.Table) -> pa.Array:
        """(UpdateDate, UpdateTime) in server-local time -> UTC timestamps."""
        days = pc.cast(pc.utf8_slice_codeunits(page.column("UpdateDate"), 0, 10), pa.date32())
        day_micros = pc.cast(pc.cast(days, pa.int32()), pa.int64()).to_numpy(zero_copy_only=False) * 86_400_000_000
        seconds = seconds_of_day(
            page.column("UpdateTime") if "UpdateTime" in page.column_names else pa.nulls(page.num_rows)
        )
        utc = local_to_utc_micros(day_micros + seconds * 1_000_000, self.timezone)
        return pa.array(utc, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def seconds_of_day(update_times: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """UpdateTime as sent ("14:23:05", "14:23", "PT14H23M05S", a number like 142305, or null) -> seconds."""
    values = update_times.to_pylist()
    return np.fromiter((_seconds(update_time(v)) for v in values), dtype=np.int64, count=len(values))


def _seconds(moment: time) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second


def update_time(value: object) -> time:
    """UpdateTime as sent: "14:23:05", "14:23", an OData 3 Edm.Time "PT14H23M05S", or (some versions and
    entities) a number, HHMMSS as B1 stores UpdateTS: 1840 is 00:18:40. (It was read as HHMM, 18:40, unless
    the page held a longer number: on a page of records changed just after midnight, hours late and past
    the window, where no later load looked for them.)"""
    if value is None or value == "":
        return _END_OF_DAY
    text = str(value).strip()
    if text.isdigit():
        digits = text.zfill(6)
        return time(int(digits[:2]), int(digits[2:4]), int(digits[4:6]))
    duration = _EDM_TIME.fullmatch(text)
    if duration:
        hours, minutes, seconds = (int(float(part or 0)) for part in duration.groups())
        return time(hours, minutes, seconds)
    return time.fromisoformat(text if len(text) > 5 else text + ":00")


# v1 (OData 3) names it `odata.nextLink`, v2 `@odata.nextLink`; a server may write either in either.
_NEXT_LINK_KEYS = ("odata.nextLink", "@odata.nextLink")
_EDM_TIME = re.compile(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?")


def refuses_update_date(exc: RequestFailedError) -> bool:
    """Whether the server refused a filter on UpdateDate because the set has no such property."""
    return exc.status == 400 and "UpdateDate" in (exc.server_message or "")


def _stamped(entity: SourceEntity, pages: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """The pages, unless the server has no UpdateDate for the set: SAP's Service Layer metadata gives it to the
    documents, Items and BusinessPartners only, and refuses a filter on it elsewhere (JournalEntries, the payments,
    ChartOfAccounts, ProfitCenters on many versions). Said so, with what to change, instead of a bare 400."""
    try:
        yield from pages
    except RequestFailedError as exc:
        if refuses_update_date(exc):
            raise ConfigError(
                f"SAP Business One: this Service Layer keeps no UpdateDate for {entity.entity_set}, so its changes "
                f"cannot be read by window ({exc.server_message}). Remove {entity.entity_set} from "
                "sap_business_one.entities (`mlconnector ping` lists every set the server refuses)"
            ) from None
        raise
