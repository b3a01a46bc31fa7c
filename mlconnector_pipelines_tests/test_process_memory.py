"""core.memory: the allocator settings a load relies on are in place once the package is imported."""

import os
import subprocess
import sys

import pytest

PROBE = ("import mlconnector_pipelines, pyarrow as pa; from mlconnector_pipelines.core.memory import release_free_memory; "
         "release_free_memory(); print(pa.default_memory_pool().backend_name)")


def arrow_pool(**env) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    return subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_arrow_uses_the_system_allocator():
    assert arrow_pool() == "system"


@pytest.mark.skipif(sys.platform != "linux", reason="the bundled allocators differ by platform")
def test_an_explicit_choice_wins():
    assert arrow_pool(ARROW_DEFAULT_MEMORY_POOL="mimalloc") == "mimalloc"
