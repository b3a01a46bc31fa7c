"""What a system declares about itself (see systems/registry.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..core.settings import SecretRef

if TYPE_CHECKING:
    import dagster as dg

    from ..core.ping import PingResult
    from ..ingest.config import IngestConfig


@dataclass(frozen=True)
class FlowContext:
    """What a system's flows need beyond their own section."""

    warehouse_kind: str
    data_dir: Path
    ingest: IngestConfig
    config: Any = None  # the whole ConnectorConfig: a flow that joins two systems reads the other's section


@dataclass(frozen=True)
class SystemSpec:
    key: str  # connector.yaml section, Dagster resource key, asset group and concurrency pool
    title: str  # as users name it, e.g. "Business Central"
    config_model: type[BaseModel]  # the section; must have `enabled: bool` and `http: HttpPolicy` (ping bounds it)
    # The section's assets, jobs, schedules, sensors and checks, with its resource under `key`.
    definitions: Callable[[Any, FlowContext], dg.Definitions]
    ping: Callable[[Any, Path], PingResult]  # one cheap authenticated read
    secrets: Callable[[Any], Iterable[tuple[SecretRef, str]]]  # (reference, what it is) a ping needs set
    url: Callable[[Any], str]  # where the system is, as ping shows it
    # Systems the product writes documents into: the target of a flow's documents, for replay
    # (section, data_dir, flow): a PostingTarget, or a RecordTarget (engine/records.py).
    posting_target: Callable[[Any, Path, str], Any] | None = None
    # Flows whose documents are finished by running the flow again from its source rather than from the
    # stored plan (a deal re-read from Sales, mapped with today's configuration): (config, section, record,
    # run_id, dry_run) → (what was done, ok). `replays` names the flows.
    replay: Callable[[Any, Any, Any, str, bool], tuple[str, bool]] | None = None
    replays: tuple[str, ...] = ()
    # The entities the section loads into the warehouse by window (SourceEntity), for `mlconnector lookml`.
    warehouse_entities: Callable[[Any], Sequence[Any]] | None = None

    @property
    def pool(self) -> str:
        return self.key
