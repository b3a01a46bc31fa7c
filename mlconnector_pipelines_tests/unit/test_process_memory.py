"""core.memory: the allocator settings a load relies on are in place once the package is imported."""

import os
import subprocess
import sys

import pytest

PROBE = (
    "import mlconnector_pipelines, pyarrow as pa; from mlconnector_pipelines.core.memory import release_free_memory; "
    "release_free_memory(); print(pa.default_memory_pool().backend_name)"
)


def arrow_pool(**env) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    return subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_arrow_uses_the_system_allocator():
    assert arrow_pool() == "system"


@pytest.mark.skipif(sys.platform != "linux", reason="the bundled allocators differ by platform")
def test_an_explicit_choice_wins():
    assert arrow_pool(ARROW_DEFAULT_MEMORY_POOL="mimalloc") == "mimalloc"


class LibcCalls:
    """Stands in for glibc: records which allocator functions were called with what."""

    def __init__(self):
        self.calls = []

    def __call__(self, name):
        return lambda *args: self.calls.append((name, *args))


def test_large_blocks_go_back_to_the_os_unless_the_environment_says_otherwise(monkeypatch):
    from mlconnector_pipelines.core import memory

    libc = LibcCalls()
    monkeypatch.setattr(memory, "_libc", libc)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    memory.configure_process_memory()
    assert libc.calls == [("mallopt", -3, 4 << 20)]  # M_MMAP_THRESHOLD: fixed, so glibc does not raise it
    libc.calls.clear()
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    memory.configure_process_memory()
    assert libc.calls == []


def test_freed_memory_is_trimmed(monkeypatch):
    from mlconnector_pipelines.core import memory

    libc = LibcCalls()
    monkeypatch.setattr(memory, "_libc", libc)
    memory.release_free_memory()
    assert libc.calls == [("malloc_trim", 0)]


def test_cyclic_collection_resumes_when_the_last_overlapping_pause_ends():
    import gc
    import threading

    from mlconnector_pipelines.core.memory import cyclic_gc_paused

    assert gc.isenabled()
    inner_started, outer_may_end = threading.Event(), threading.Event()
    seen = []

    def other_thread():
        with cyclic_gc_paused():
            inner_started.set()
            outer_may_end.wait(5)
        seen.append(gc.isenabled())

    with cyclic_gc_paused():
        worker = threading.Thread(target=other_thread)
        worker.start()
        inner_started.wait(5)
    seen.append(gc.isenabled())  # the other thread's pause still holds
    outer_may_end.set()
    worker.join(5)
    assert seen == [False, True]
    assert gc.isenabled()


def test_a_pause_never_turns_on_collection_the_process_had_turned_off():
    import gc

    from mlconnector_pipelines.core.memory import cyclic_gc_paused

    gc.disable()
    try:
        with cyclic_gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_posting_steps_run_without_cyclic_collection():
    import gc

    from mlconnector_pipelines.core.posting import Plan
    from mlconnector_pipelines.engine.post import PostingEngine

    seen = []

    class Target:
        def validate(self, plan):
            seen.append(gc.isenabled())
            return []

    engine = PostingEngine(Target(), audit=None, run_id="r")
    engine.problems(Plan("f", "p", "k", "S", "c", {}, ()))
    assert seen == [False] and gc.isenabled()
