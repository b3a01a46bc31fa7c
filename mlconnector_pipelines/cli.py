"""`mlconnector`: run the sandbox, and (as issues land) ping, credentials, replay, lookml."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from .config import DEFAULT_SANDBOX_PORT, default_data_dir
from .core.errors import ConnectorError


@click.group()
def main() -> None:
    """ml-connector pipelines command line."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to listen on.")
@click.option("--port", default=DEFAULT_SANDBOX_PORT, show_default=True, type=int)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where the sandbox CA lives (default: $MLCONNECTOR_DATA_DIR or ./data).")
@click.option("--companies", default=2, show_default=True, type=int)
@click.option("--gl-entries", default=1500, show_default=True, type=int, help="G/L entries per company.")
@click.option("--history-days", default=28, show_default=True, type=int,
              help="Days of history before today (UTC) the seed data spans.")
@click.option("--live/--no-live", default=True, show_default=True,
              help="Create and modify records over time, some committed late.")
@click.option("--seed", default=42, show_default=True, type=int)
def sandbox(host: str, port: int, data_dir: Path | None, companies: int, gl_entries: int, history_days: int,
            live: bool, seed: int) -> None:
    """Serve the simulated Entra ID and Business Central over HTTPS on loopback."""
    from datetime import timedelta

    from .sandbox.app import SandboxSettings
    from .sandbox.bc_data import Volumes
    from .sandbox.server import serve_forever

    if host not in ("127.0.0.1", "localhost", "::1"):
        raise click.UsageError("the sandbox only listens on loopback")
    end = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    settings = SandboxSettings(seed=seed, companies=companies, history_start=end - timedelta(days=history_days),
                               history_end=end, volumes=Volumes(gl_entries=gl_entries), live=live)
    serve_forever((data_dir or default_data_dir()).resolve(), settings, host, port)


def run() -> None:
    try:
        main(standalone_mode=True)
    except ConnectorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
