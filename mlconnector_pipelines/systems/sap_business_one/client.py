"""SAP Business One Service Layer client (/b1s/v1 OData v3 or /b1s/v2 OData v4).

Incremental reads: documents carry UpdateDate (a date) and UpdateTime (time of day) apart. The
server filters on the date (inclusive); the client refines on (date, time) to the half-open
window and drops duplicates by key.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from ...core.errors import ConfigError
from ...core.http import HttpPolicy, ThrottledClient
from ...core.odata import iterate_pages, string_literal
from ...core.tls import pinned_ssl_context, ssl_context
from ...core.catalog import SourceEntity
from .session import SYSTEM, ServiceLayerSession, session_expired

MODIFIED_AT = "UpdateDateTime"  # added by the client: UpdateDate + UpdateTime as a UTC timestamp


class ServiceLayerClient:
    def __init__(
        self,
        *,
        base_url: str,
        company_db: str,
        username: str,
        password: str,
        page_size: int = 500,
        server_timezone: str = "UTC",
        ca_bundle: str | None = None,
        pinned_sha256: str | None = None,
        policy: HttpPolicy | None = None,
    ):
        parts = urlsplit(base_url.rstrip("/"))
        self.version = parts.path.rsplit("/", 1)[-1]
        if parts.scheme != "https" or self.version not in ("v1", "v2") or "/b1s/" not in parts.path + "/":
            raise ConfigError("sap_business_one.base_url: expected https://<host>:<port>/b1s/v1 or /b1s/v2, "
                              f"got {base_url!r}")
        if pinned_sha256:
            verify = pinned_ssl_context(parts.hostname, parts.port or 443, pinned_sha256, what="sap_business_one")
        else:
            verify = ssl_context(ca_bundle, what="sap_business_one")
        self.page_size = page_size
        self.timezone = ZoneInfo(server_timezone)
        base = base_url.rstrip("/") + "/"
        login_http = ThrottledClient(SYSTEM, base_url=base, policy=policy, verify=verify, secrets=(password,))
        self.session = ServiceLayerSession(login_http, company_db=company_db, username=username, password=password)
        self._login_http = login_http
        self.http = ThrottledClient(SYSTEM, base_url=base, policy=policy, verify=verify, auth=self.session,
                                    secrets=(password,), reauthenticate_on=session_expired)
        self._next_link_keys = ("odata.nextLink",) if self.version == "v1" else ("@odata.nextLink",)

    def close(self) -> None:
        self.session.logout()
        self.http.close()
        self._login_http.close()

    def __enter__(self) -> "ServiceLayerClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pages(self, entity: SourceEntity, start: datetime, end: datetime) -> Iterator[list[dict[str, Any]]]:
        """Records updated in `[start, end)`, each with `UpdateDateTime` (UTC, ISO), once per key."""
        first_day = start.astimezone(self.timezone).date()
        last_day = (end - timedelta(microseconds=1)).astimezone(self.timezone).date()
        params = {
            "$filter": f"UpdateDate ge {string_literal(first_day.isoformat())} and "
                       f"UpdateDate le {string_literal(last_day.isoformat())}",
            # Ordered by key, $skip paging stays stable while records change underneath.
            "$orderby": entity.key,
        }
        seen: set[Any] = set()
        for page in iterate_pages(self.http, entity.entity_set, params=params,
                                  headers={"Prefer": f"odata.maxpagesize={self.page_size}"},
                                  next_link_keys=self._next_link_keys):
            kept = []
            for record in page:
                moment = self._modified_at(record)
                if start <= moment < end and record[entity.key] not in seen:
                    seen.add(record[entity.key])
                    record[MODIFIED_AT] = moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
                    kept.append(record)
            if kept:
                yield kept

    def _modified_at(self, record: dict) -> datetime:
        day = datetime.strptime(str(record["UpdateDate"])[:10], "%Y-%m-%d").date()
        return datetime.combine(day, update_time(record.get("UpdateTime")),
                                tzinfo=self.timezone).astimezone(timezone.utc)


def update_time(value: object) -> time:
    """UpdateTime as sent: "14:23:05", "14:23", or (some versions and entities) a number like 1423 or 142305."""
    if value is None or value == "":
        return time(0, 0)
    text = str(value).strip()
    if text.isdigit():
        digits = text.zfill(6) if len(text) > 4 else text.zfill(4) + "00"
        return time(int(digits[:2]), int(digits[2:4]), int(digits[4:6]))
    return time.fromisoformat(text if len(text) > 5 else text + ":00")
