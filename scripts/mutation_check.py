"""Plant each bug of scripts/mutations.yaml in a scratch copy of the tree, run the tests that must
catch it, and fail if any bug survives. See the README's Development section for when to run it.

Each entry: `name`, `file`, `find` (text that must occur exactly once), `replace`, `tests` (pytest
arguments, e.g. a module or `module::test`). The working tree is never modified: each bug is
planted in a copy under a temporary folder, which the tests import through PYTHONPATH.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
COPIED = (
    "mlconnector_pipelines",
    "mlconnector_pipelines_tests",
    "pyproject.toml",
    "workspace.yaml",
    "dagster.yaml",
    "deploy",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only the bugs whose name contains one of these")
    parser.add_argument("--list", default=str(REPO / "scripts" / "mutations.yaml"))
    args = parser.parse_args()
    mutations = yaml.safe_load(Path(args.list).read_text())
    if args.names:
        mutations = [m for m in mutations if any(n in m["name"] for n in args.names)]
    results = []
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as scratch:
        tree = Path(scratch) / "tree"
        for mutation in mutations:
            results.append((mutation["name"], run_one(mutation, tree)))
    width = max(len(name) for name, _ in results)
    for name, (verdict, detail) in results:
        print(f"{verdict:9} {name:<{width}}  {detail}")
    survived = [name for name, (verdict, _) in results if verdict != "caught"]
    print(f"\n{len(results) - len(survived)} of {len(results)} planted bugs caught")
    return 1 if survived else 0


def run_one(mutation: dict, tree: Path) -> tuple[str, str]:
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        elif source.exists():
            shutil.copy2(source, tree / name)
    target = tree / mutation["file"]
    text = target.read_text()
    occurrences = text.count(mutation["find"])
    if occurrences != 1:
        return "stale", f"`find` occurs {occurrences} times in {mutation['file']}: update the list"
    target.write_text(text.replace(mutation["find"], mutation["replace"]))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutation["tests"]],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - started
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    if done.returncode == 1:
        return "caught", f"{seconds:.0f}s: {summary}"
    if done.returncode == 0:
        return "SURVIVED", f"{seconds:.0f}s: {summary}"
    return "ERROR", f"pytest exited {done.returncode}: {summary}"


if __name__ == "__main__":
    sys.exit(main())
