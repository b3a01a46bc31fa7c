"""Jobs rebuilt from $MLCONNECTOR_CONFIG in each step process, for runs on the real executor."""

from mlconnector_pipelines.config import load_config
from mlconnector_pipelines.definitions import build_definitions
from mlconnector_pipelines.flows.business_central import JOB


def bc_job_from_env():
    return build_definitions(load_config()).resolve_job_def(JOB)


def ping_job_from_env():
    return build_definitions(load_config()).resolve_job_def("ping")
