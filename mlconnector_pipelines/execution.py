"""How a run executes its steps: in the run's own process, unless the run asks for step processes.

Dagster's default starts a Python process per step, and each imports Dagster and this code location
again and signs in to its system anew. Measured on the sandbox (2 cores): a journal's four steps
took 12-15 s that way and under 1 s in the run's process; a day of Business Central 21-23 s against
6-7 s. Each step still waits for its system's pool slot. A run that wants steps
in parallel processes (a large window on a machine with cores to spare) asks in its run config:

    execution:
      config:
        multiprocess:
          max_concurrent: 4
"""

from __future__ import annotations

import dagster as dg

_DAGSTER_DEFAULT = dg.multi_or_in_process_executor  # the same two modes and their settings; only the default differs

in_process_unless_asked = dg.ExecutorDefinition(
    name="in_process_unless_asked",
    config_schema=dg.Field(_DAGSTER_DEFAULT.config_schema.as_field().config_type, default_value={"in_process": {}}),
    requirements=_DAGSTER_DEFAULT.get_requirements,
    executor_creation_fn=_DAGSTER_DEFAULT.executor_creation_fn,
    description="Steps run in the run's process; `multiprocess:` in the run config runs them in processes of "
    "their own.",
)
