"""connector.yaml, validated. With no file the product runs against the local sandbox.

The file's path comes from `MLCONNECTOR_CONFIG`. Secrets are never written in it: a secret
field names an environment variable that holds the value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ValidationError, create_model, model_validator

from .audit.config import AuditConfig
from .core.errors import ConfigError
from .core.settings import Strict
from .ingest.config import IngestConfig
from .systems.registry import SYSTEMS
from .warehouse.config import WarehouseConfig

CONFIG_ENV = "MLCONNECTOR_CONFIG"
DATA_DIR_ENV = "MLCONNECTOR_DATA_DIR"
SANDBOX_URL_ENV = "MLCONNECTOR_SANDBOX_URL"


class _ConnectorBase(Strict):
    """What every connector.yaml has; each registered system adds its optional section."""

    profile: Literal["sandbox", "custom"] = "custom"
    data_dir: Path
    warehouse: WarehouseConfig = WarehouseConfig()
    ingest: IngestConfig = IngestConfig()
    audit: AuditConfig = AuditConfig()

    @model_validator(mode="after")
    def _absolute_paths(self) -> ConnectorConfig:
        if not self.data_dir.is_absolute():  # `~/mlc` is the home's, not a folder named `~`
            object.__setattr__(self, "data_dir", self.data_dir.expanduser().resolve())
        return self

    @property
    def duckdb_path(self) -> Path:
        return self.warehouse.duckdb_path or self.data_dir / "warehouse.duckdb"

    @property
    def sandbox_dir(self) -> Path:
        return self.data_dir / "sandbox"


ConnectorConfig = create_model(
    "ConnectorConfig",
    __base__=_ConnectorBase,
    __doc__="connector.yaml: data_dir, warehouse, ingest, audit, one section per registered system (absent: not used).",
    **{spec.key: (spec.config_model | None, None) for spec in SYSTEMS},
)


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or "data").resolve()


def sandbox_url() -> str:
    from .sandbox.registry import DEFAULT_PORT

    return os.environ.get(SANDBOX_URL_ENV) or f"https://127.0.0.1:{DEFAULT_PORT}"


def sandbox_profile(data_dir: Path | None = None, url: str | None = None) -> dict:
    """The raw settings that point every system at `mlconnector sandbox` (its services' own profiles)."""
    from .sandbox.registry import sandbox_profile as service_sections

    data_dir = (data_dir or default_data_dir()).resolve()
    return {
        "profile": "sandbox",
        "data_dir": str(data_dir),
        **service_sections(data_dir, (url or sandbox_url()).rstrip("/")),
    }


def _is_secret_ref(value: dict) -> bool:
    return bool({"env", "credential"} & set(value))


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        # A secret reference names one source; merging would mix the default's source with the file's.
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and not _is_secret_ref(value):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_config(raw: dict, *, source: str = "connector.yaml") -> ConnectorConfig:
    """Validate raw settings; a `profile: sandbox` file overrides the sandbox defaults."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of settings")
    if not isinstance(raw.get("data_dir", ""), str | Path):
        raise ConfigError(f"{source} is invalid — data_dir: must be a folder's path")
    if raw.get("profile") == "sandbox":
        raw = _merge(sandbox_profile(Path(raw["data_dir"]).expanduser() if raw.get("data_dir") else None), raw)
    raw.setdefault("data_dir", str(default_data_dir()))
    try:
        return ConnectorConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source} is invalid — {problems}") from None


def _refuse_a_store_left_where_it_was(data_dir: Path, beside: Path, config: Path) -> None:
    """Releases before this one read a relative data_dir against the current folder: a deployment's warehouse,
    audit store and deliveries there would silently be left behind for an empty folder beside connector.yaml."""
    before = data_dir.resolve()
    if before != beside and not beside.exists() and before.is_dir() and any(before.iterdir()):
        raise ConfigError(
            f"{config}: data_dir {data_dir} is now read from connector.yaml's folder ({beside}), which does not "
            f"exist, while {before} (from the current folder, as earlier releases read it) holds data: move it to "
            f"{beside}, or give data_dir as an absolute path"
        )


def load_config(path: str | Path | None = None) -> ConnectorConfig:
    """Load `path`, else `$MLCONNECTOR_CONFIG`, else the sandbox profile.

    A relative `data_dir` is the file's folder's: the Dagster daemon, the webserver and a person's shell each
    start elsewhere, and read against each one's own directory, one connector.yaml meant several stores (a
    replay found nothing to do in an audit store no run had written)."""
    given = path
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return parse_config(sandbox_profile(), source="sandbox profile")
    path = Path(path)
    if not path.is_file():
        said = f"--config {path} does not exist" if given else f"{CONFIG_ENV} points at {path}, which does not exist"
        raise ConfigError(said)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if isinstance(raw, dict) and isinstance(raw.get("data_dir"), str):
        data_dir = Path(raw["data_dir"]).expanduser()
        if not data_dir.is_absolute():
            beside = path.resolve().parent / data_dir
            _refuse_a_store_left_where_it_was(data_dir, beside, path)
            data_dir = beside
        raw["data_dir"] = str(data_dir)
    return parse_config(raw, source=str(path))
