"""The house grows by folders: central modules name no system, and every setting is declared once."""

import ast
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from mlconnector_pipelines.sandbox.registry import SERVICES
from mlconnector_pipelines.systems.registry import SYSTEMS
from mlconnector_pipelines.systems.resource_base import SystemResource

PACKAGE = Path(__file__).resolve().parents[2] / "mlconnector_pipelines"
# The registries themselves list the folders (one name each); everything central iterates them.
CENTRAL = [
    "definitions.py",
    "ping.py",
    "cli.py",
    "config.py",
    "sandbox/server.py",
    "sandbox/core/service.py",
    "sandbox/core/declaration.py",
    "flows/connectivity.py",
    "flows/replay.py",
    "warehouse/ping.py",
    "replay.py",
    "engine/post.py",
    "audit/store.py",
    "core/posting.py",
]


def names_of_systems() -> set[str]:
    """How code would name a system: its key, its folder, its title, or an abbreviation in use."""
    names = {s.key for s in SYSTEMS} | {s.title for s in SYSTEMS} | {s.key for s in SERVICES if s.key != "entra"}
    names |= {s.title for s in SERVICES}
    return names | {"bc", "sap", "b1", "looker", "entra", "dataverse", "acumatica", "finance_operations"}


def code_of(path: Path) -> str:
    """The module's code without its docstrings and comments (prose may mention examples)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(getattr(body[0], "value", None), ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body[0] = ast.Pass()
    return ast.unparse(tree)


@pytest.mark.parametrize("module", CENTRAL)
def test_central_modules_name_no_system(module):
    code = code_of(PACKAGE / module)
    found = sorted(
        name
        for name in names_of_systems()
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", code, re.IGNORECASE)
    )
    assert not found, f"{module} names {found}: iterate the registry instead"


def test_the_check_would_see_a_system_named_in_code():
    code = code_of(PACKAGE / "systems" / "business_central" / "system.py")
    assert any(
        re.search(rf"(?<![A-Za-z0-9]){re.escape(n)}(?![A-Za-z0-9])", code, re.IGNORECASE) for n in names_of_systems()
    )


@pytest.mark.parametrize("spec", SYSTEMS, ids=lambda s: s.key)
def test_a_systems_resource_holds_its_section_and_nothing_else(spec, tmp_path):
    """One declaration per setting: the resource declares no setting of its own, it carries the model."""
    from mlconnector_pipelines.config import load_config

    section = getattr(load_config(), spec.key)
    definitions = spec.definitions(section, _context(tmp_path))
    resource = definitions.resources[spec.key]
    assert isinstance(resource, SystemResource)
    assert set(type(resource).model_fields) == {"settings", "data_dir"}
    assert resource.section == section  # the model, every field as validated


def _context(tmp_path):
    from mlconnector_pipelines.config import load_config
    from mlconnector_pipelines.ingest.config import IngestConfig
    from mlconnector_pipelines.systems.registry import FlowContext

    return FlowContext(warehouse_kind="duckdb", data_dir=tmp_path, ingest=IngestConfig(), config=load_config())


def test_every_connector_section_is_a_registered_systems_model():
    from mlconnector_pipelines.config import ConnectorConfig

    systems = {s.key: s.config_model for s in SYSTEMS}
    sections = {name: f.annotation for name, f in ConnectorConfig.model_fields.items() if name in systems}
    assert sections.keys() == systems.keys()
    for name, annotation in sections.items():
        assert systems[name] in getattr(annotation, "__args__", ()), name


def test_defaults_are_written_once_in_the_section_model():
    """A client default that differs from its model's would be a second declaration (Looker's poll was 2, 2, 1)."""
    import inspect

    from mlconnector_pipelines.systems.business_central.client import BusinessCentralClient
    from mlconnector_pipelines.systems.looker.client import LookerClient
    from mlconnector_pipelines.systems.sap_business_one.client import ServiceLayerClient

    for client in (BusinessCentralClient, LookerClient, ServiceLayerClient):
        parameters = inspect.signature(client.__init__).parameters
        settings = [
            p
            for p in parameters.values()
            if p.name not in ("self", "cfg")
            and p.default is not inspect.Parameter.empty
            and isinstance(p.default, (int, float, str))
        ]
        assert not settings, f"{client.__name__} declares settings {[p.name for p in settings]}: take them from cfg"
        assert issubclass(
            parameters["cfg"].annotation if isinstance(parameters["cfg"].annotation, type) else BaseModel, BaseModel
        )


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.key)
def test_each_sandbox_service_declares_settings_with_defaults(service):
    service.settings()  # every field has a default: `mlconnector sandbox` starts with no options


def test_every_simulator_runs_the_shared_request_pipeline(tmp_path):
    """Credential check → rate window → faults → handler is one piece of code, not one copy per service."""
    from mlconnector_pipelines.sandbox.core.service import SimulatedService
    from mlconnector_pipelines.sandbox.registry import BuildContext

    context = BuildContext(data_dir=tmp_path, services={})
    for service in SERVICES:
        context.services[service.key] = service.build(service.settings(), context)
        simulator = context.services[service.key]
        assert isinstance(simulator, SimulatedService), service.key
        overridden = {
            hook
            for hook in ("caller", "unauthorized", "failure", "expire_credentials")
            if getattr(type(simulator), hook) is not getattr(SimulatedService, hook)
        }
        assert overridden == {"caller", "unauthorized", "failure", "expire_credentials"} - (
            {"unauthorized"} if service.key == "entra" else set()
        ), service.key


def test_the_sandbox_profiles_code_location_loads_with_every_job_resolved():
    """What `dagster dev` loads: a job selecting assets partitioned otherwise would fail here, not in the UI."""
    from mlconnector_pipelines.config import load_config
    from mlconnector_pipelines.definitions import build_definitions

    definitions = build_definitions(load_config())
    jobs = {job.name for job in definitions.resolve_all_job_defs()}
    assert {
        "acumatica_to_warehouse",
        "acumatica_fee_allocation_journal",
        "finance_operations_fee_allocation_journal",
    } <= jobs
    assert definitions.resolve_asset_graph().get_all_asset_keys()


@pytest.mark.parametrize("business_central", [None, {"enabled": False}])
def test_sales_to_bc_without_business_central_is_a_config_error_not_a_flow_left_out(business_central, tmp_path):
    """Sales → BC switched on with no Business Central to write into: the flow was left out without a word, and
    won deals waited with nothing saying why. Like journals without Looker, it is a configuration error."""
    from mlconnector_pipelines.config import parse_config, sandbox_profile
    from mlconnector_pipelines.core.errors import ConfigError
    from mlconnector_pipelines.definitions import build_definitions

    raw = sandbox_profile(tmp_path, "https://127.0.0.1:47800")
    raw["business_central"] = None if business_central is None else {**raw["business_central"], **business_central}
    with pytest.raises(ConfigError, match=r"dataverse\.sales_to_business_central.*business_central section"):
        build_definitions(parse_config(raw))
    raw["dataverse"]["sales_to_business_central"]["enabled"] = False
    assert "dynamics_sales_changes" not in {s.name for s in build_definitions(parse_config(raw)).sensors or []}


def test_every_step_that_talks_to_an_erp_is_in_that_systems_pool():
    """dagster.yaml bounds each system's concurrent steps by its pool: a step outside it (a journal's writes,
    a Sales deal, BC's deletions and subscriptions, a reconciliation) ran beside the loads, past the bound."""
    from mlconnector_pipelines.config import load_config
    from mlconnector_pipelines.definitions import build_definitions
    from mlconnector_pipelines.systems.registry import SYSTEMS

    erps = {spec.key for spec in SYSTEMS} - {"looker"}
    definitions = build_definitions(load_config())
    steps = {
        (job.name, op.name): op for job in definitions.resolve_all_job_defs() for op in job.graph.iterate_op_defs()
    }
    talking = {name: op for name, op in steps.items() if set(op.required_resource_keys) & erps}
    assert len(talking) > 10  # the case: the sandbox profile's every system
    assert sorted(f"{job}/{op}" for (job, op), d in talking.items() if not d.pool) == []
