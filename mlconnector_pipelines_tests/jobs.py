"""Jobs rebuilt from $MLCONNECTOR_CONFIG in each step process, for runs on the real executor."""

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob

from mlconnector_pipelines.config import load_config
from mlconnector_pipelines.definitions import build_definitions
from mlconnector_pipelines.flows.business_central import JOB


def bc_job_from_env():
    return build_definitions(load_config()).resolve_job_def(JOB)


def ping_job_from_env():
    return build_definitions(load_config()).resolve_job_def("ping")


# Step processes must see this test's environment ($MLCONNECTOR_CONFIG); a forkserver started by an
# earlier test would hand them that test's environment instead.
SPAWN = {"execution": {"config": {"multiprocess": {"start_method": {"spawn": {}}}}}}


def fresh(job_fn) -> ReconstructableJob:
    """A reconstructable job built from the current $MLCONNECTOR_CONFIG.

    Dagster keeps the last loaded definition per process (an lru_cache on equal pointers), so a
    second test with another config would otherwise run the first test's job.
    """
    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()
    return dg.reconstructable(job_fn)
