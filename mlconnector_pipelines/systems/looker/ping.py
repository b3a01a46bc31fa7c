"""Can we log in to this Looker and do the configured queries name models, explores, fields and Looks that exist?

Reads metadata only: no query runs, so a ping never spends a monthly query-quota call.
"""

from __future__ import annotations

from pathlib import Path

from ...core.errors import AuthenticationError, ConfigError, RequestFailedError
from ...core.ping import CONFIG_FIX, PingResult, known_fix, run_check
from ...core.tls import tls_fix
from .config import LookerConfig
from .resource import LookerResource
from .session import SYSTEM


def ping(cfg: LookerConfig, data_dir: Path) -> PingResult:
    def read(client) -> str:
        user = client.me()
        problems = []
        for query in cfg.queries:
            try:
                spec = client.look_query(query.look_id) if query.look_id else None
                model, explore = (spec.model, spec.view) if spec else (query.model, query.explore)
                wanted = (
                    list(spec.fields if spec else query.fields)
                    + list(query.filters)
                    + ([query.partition.field] if query.partition else [])
                )
                available = client.explore_fields(model, explore)
            except RequestFailedError as exc:
                problems.append(f"{query.name}: {exc}")
                continue
            missing = [f for f in wanted if f not in available]
            if missing:
                problems.append(f"{query.name}: {', '.join(missing)} not in {model}/{explore}")
        if problems:
            raise ConfigError("logged in, but " + "; ".join(problems))
        return (
            f"logged in as {user.get('display_name') or user.get('email') or user.get('id')}; "
            f"{len(cfg.queries)} configured quer{'y' if len(cfg.queries) == 1 else 'ies'} match the LookML"
        )

    return run_check(
        SYSTEM,
        f"{cfg.base_url}/api/4.0",
        connect=lambda: LookerResource.from_section(cfg, data_dir).client(),
        authenticate=lambda client: client.login.auth_headers(),  # logs in
        read=read,
        likely_fix=likely_fix,
    )


def likely_fix(exc: Exception) -> str:
    tls = tls_fix(
        exc,
        unknown_issuer="TLS not trusted: set looker.ca_bundle to the CA that signed the Looker host's certificate",
    )
    if tls:
        return tls
    fix = known_fix(exc)
    if fix:
        return fix
    if isinstance(exc, ConfigError) and "logged in, but" in str(exc):
        return (
            "model, explore and field names come from your LookML: correct looker.queries, or give the API "
            "user access to that model"
        )
    if isinstance(exc, ConfigError):
        return CONFIG_FIX
    if isinstance(exc, (RequestFailedError, AuthenticationError)) and exc.status in (401, 403):
        return "the API user lacks permission: give its role access_data and see_looks on the models used"
    return "check looker.base_url (https://<instance>.cloud.looker.com) and that the API is reachable"
