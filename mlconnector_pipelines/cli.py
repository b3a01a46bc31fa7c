"""`mlconnector`: sandbox, ping, ingest, credentials, replay and trace (lookml as its issue lands)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from .config import default_data_dir
from .core.errors import ConnectorError


@click.group()
def main() -> None:
    """ml-connector pipelines command line."""


def _sandbox_options(command):
    """One option per setting a registered sandbox service offers (its default is the settings model's)."""
    from .sandbox.registry import SERVICES

    for service in reversed(SERVICES):
        for option in reversed(service.cli):
            default = _setting(service.settings(), option.paths[0])
            command = click.option(
                f"--{option.name}",
                f"{service.key}__{option.paths[0].replace('.', '__')}",
                type=option.type,
                default=None,
                help=option.help if default is None else f"{option.help} [default: {default}]",
            )(command)
    return command


def _setting(model, path: str):
    for part in path.split("."):
        model = getattr(model, part)
    return model


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to listen on.")
@click.option(
    "--port",
    default=None,
    type=int,
    help="The shared port (default 47800); services with their own certificate listen at fixed offsets from it.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the sandbox CA lives (default: $MLCONNECTOR_DATA_DIR or ./data).",
)
@click.option(
    "--history-days",
    default=28,
    show_default=True,
    type=int,
    help="Days of history before today (UTC) the seed data spans.",
)
@click.option(
    "--live/--no-live",
    default=True,
    show_default=True,
    help="Create and modify records over time, some committed late.",
)
@click.option("--seed", default=None, type=int, help="Seed of the generated data (default: each service's own).")
@_sandbox_options
def sandbox(
    host: str,
    port: int | None,
    data_dir: Path | None,
    history_days: int,
    live: bool,
    seed: int | None,
    **service_options,
) -> None:
    """Serve every simulated service (Entra ID, the ERPs, Looker) over HTTPS on loopback."""
    from datetime import timedelta

    from .sandbox.registry import DEFAULT_PORT, SERVICES
    from .sandbox.server import SandboxSettings, serve_forever

    if host not in ("127.0.0.1", "localhost", "::1"):
        raise click.UsageError("the sandbox only listens on loopback")
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    data_dir = (data_dir or default_data_dir()).resolve()
    shared = {"seed": seed, "history_start": end - timedelta(days=history_days), "history_end": end, "live": live}
    sections = {}
    for service in SERVICES:
        raw = service.settings().model_dump()
        raw.update({name: value for name, value in shared.items() if name in service.shared and value is not None})
        for option in service.cli:
            value = service_options[f"{service.key}__{option.paths[0].replace('.', '__')}"]
            if value is not None:
                for path in option.paths:
                    _assign(raw, path, value)
        sections[service.key] = service.settings.model_validate(raw)
    serve_forever(data_dir, SandboxSettings(**sections), host, port or DEFAULT_PORT)


def _assign(raw: dict, path: str, value) -> None:
    *parents, name = path.split(".")
    for part in parents:
        raw = raw[part]
    raw[name] = value


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="connector.yaml (default: $MLCONNECTOR_CONFIG, else the sandbox profile).",
)
def ping(config_path: Path | None) -> None:
    """Check each configured system: authenticate, make one cheap read, print a table."""
    from .config import load_config
    from .core.ping import render_line, render_table
    from .ping import run_pings

    results = run_pings(load_config(config_path), on_result=lambda result: click.echo(render_line(result)))
    click.echo("\n" + render_table(results))
    failed = [r for r in results if not r.ok]
    click.echo(f"\n{len(results) - len(failed)} of {len(results)} system(s) OK")
    sys.exit(1 if failed else 0)


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="connector.yaml (default: $MLCONNECTOR_CONFIG, else the sandbox profile).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (put a TLS-terminating proxy in front when a sender reaches it over the internet).",
)
@click.option("--port", default=47900, show_default=True, type=int)
@click.option("--ssl-certfile", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--ssl-keyfile", type=click.Path(exists=True, path_type=Path), default=None)
def ingest(config_path: Path | None, host: str, port: int, ssl_certfile: Path | None, ssl_keyfile: Path | None) -> None:
    """Receive Looker scheduled-plan deliveries at POST /looker/scheduled-plans/<secret> and store
    them durably; the Dagster sensor `looker_scheduled_plan_deliveries` materializes them."""
    import logging

    import uvicorn

    from .config import load_config
    from .ingest.app import create_app

    cfg = load_config(config_path)
    app = create_app(cfg)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    where = "the database at ingest.store_url" if cfg.ingest.store_url else cfg.data_dir / "ingest"
    click.echo(
        f"ingest: receiving deliveries at http{'s' if ssl_certfile else ''}://{host}:{port}"
        f"{', '.join(sorted(route.path for route in app.routes if '{' in route.path))}  (stored in {where})"
    )
    # access_log=False: the request line holds the URL secret.
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        log_level="info",
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )


_CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="connector.yaml (default: $MLCONNECTOR_CONFIG, else the sandbox profile).",
)


@main.command()
@_CONFIG_OPTION
@click.option(
    "--flow",
    default=None,
    help="Only this flow's documents (the journal's asset key, as the audit store and the UI show it).",
)
@click.option("--dry-run", is_flag=True, help="Say what each unfinished document needs; write nothing.")
def replay(config_path: Path | None, flow: str | None, dry_run: bool) -> None:
    """Finish every journal the audit store has not seen verified (crashed runs, lost answers, refusals
    whose reference data is now fixed), through the same engine: each document is found by its natural
    key first, and only what is missing is written."""
    from .config import load_config
    from .replay import replay as run_replay

    outcomes = run_replay(load_config(config_path), flow=flow, dry_run=dry_run)
    if not outcomes:
        click.echo("nothing to replay: every recorded document is verified")
    for outcome in outcomes:
        d = outcome.document
        click.echo(
            f"{'ok  ' if outcome.ok else 'FAIL'} {d.flow} {d.partition or '-'} {d.document_key}: {outcome.action}"
        )
    sys.exit(0 if all(o.ok for o in outcomes) else 1)


@main.command()
@_CONFIG_OPTION
@click.argument("reference")
def trace(config_path: Path | None, reference: str) -> None:
    """Walk a posted document or line back to its Looker row and the warehouse tables Looker read.

    REFERENCE: a document number (00601), company/number (usrt/00601) or company/number/line (usrt/00601/3)."""
    from .config import load_config
    from .replay import trace as run_trace

    for line in run_trace(load_config(config_path), reference):
        click.echo(line)


@main.command()
@_CONFIG_OPTION
@click.option("--out", "out", type=click.Path(path_type=Path), default=Path("lookml"), show_default=True)
@click.option(
    "--connection",
    default="mlconnector_warehouse",
    show_default=True,
    help="The connection (Admin → Connections) through which the BI instance reaches this warehouse.",
)
def lookml(config_path: Path | None, out: Path, connection: str) -> None:
    """Write a LookML project for the tables the flows have loaded: a view per current-state table (typed
    from the warehouse), an explore per entity joining its lines and what they refer to. Copy it into a
    LookML project of the BI instance (or point one at a Git repo holding it)."""
    from .config import load_config
    from .lookml import write_project

    written = write_project(load_config(config_path), out, connection)
    views = sum(1 for p in written if p.name.endswith(".view.lkml"))
    click.echo(f"wrote {views} views and {out / 'mlconnector.model.lkml'}")


@main.group()
@_CONFIG_OPTION
@click.pass_context
def credentials(context: click.Context, config_path: Path | None) -> None:
    """Secrets encrypted at rest in <data_dir>/credentials.json (key: $MLCONNECTOR_CREDENTIALS_KEY
    or <data_dir>/credentials.key). Reference one in connector.yaml as `client_secret: {credential: NAME}`.
    The data_dir is the one of the connector.yaml that runs use (`--config`, before the command)."""
    context.obj = config_path


def _store():
    from .config import load_config
    from .core.credentials import CredentialStore

    return CredentialStore(load_config(click.get_current_context().obj).data_dir)  # the group's --config


@credentials.command("set")
@click.argument("name")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the value from standard input.")
def credentials_set(name: str, from_stdin: bool) -> None:
    """Store (or replace) a secret. Prompts without echo unless --stdin."""
    store = _store()
    store.writable()  # refuse before asking for a secret that could not be stored
    value = (
        sys.stdin.readline().rstrip("\n")
        if from_stdin
        else click.prompt(f"value for {name}", hide_input=True, confirmation_prompt=True)
    )
    store.set(name, value)
    click.echo(f"stored {name}")


@credentials.command("list")
def credentials_list() -> None:
    """Names of stored secrets (never their values)."""
    for name in _store().names():
        click.echo(name)


@credentials.command("delete")
@click.argument("name")
def credentials_delete(name: str) -> None:
    if not _store().delete(name):
        raise click.ClickException(f"no credential named {name!r}")
    click.echo(f"deleted {name}")


@credentials.command("rotate-key")
def credentials_rotate_key() -> None:
    """Re-encrypt every secret under a new key."""
    import os

    from .core.credentials import KEY_ENV

    path = _store().rotate_key()
    click.echo(f"re-encrypted every credential; new key in {path}")
    if os.environ.get(KEY_ENV):
        click.echo(f"${KEY_ENV} still holds the old key: set it to the content of {path}, or unset it")


def run() -> None:
    try:
        main(standalone_mode=True)
    except ConnectorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
