"""An import's start-up: CPU and wall from the process's start to its writer's first row.

    .venv/bin/python bench/first_row.py [--pairs 6] [--rows 1000000] NAME=SRC [NAME=SRC ...]

Each build (``SRC``: a ``src`` folder, e.g. a detached worktree of main's) runs ``cdrgate import``
of the seeded Yeastar file into a fresh copy of the empty migrated store, through
``PYTHONPATH``, in turn (the order alternated every round). The import is stopped at the
writer's first call of ``yeastar_sql.load`` (as Ctrl-C stops it: rolled back, nothing stored),
where the process prints its CPU time (``time.process_time``), its wall time since it started
(``/proc``), whether SQLAlchemy is imported, and how many modules are. Load moves these figures
much less than a whole import's wall (bench/RESULTS.md, eighteenth round).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import benchlib as b

# Run in the measured process: wraps yeastar_sql.load when its module is first imported.
_PROBE = r"""
import importlib.abc, importlib.util, os, runpy, sys, time

def since_start():
    ticks = os.sysconf("SC_CLK_TCK")
    start = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / ticks
    return float(open("/proc/uptime").read().split()[0]) - start

class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "cdrgate.ingest.yeastar_sql":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)

            def first_row(*args, **kwargs):
                print(f"FIRSTROW {time.process_time():.3f} {since_start():.2f} "
                      f"{'sqlalchemy' in sys.modules} {len(sys.modules)}", file=sys.stderr)
                raise KeyboardInterrupt

            module.load = first_row

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Hook())
sys.argv = ["cdrgate", *sys.argv[1:]]
runpy.run_module("cdrgate", run_name="__main__")
"""


def _first_row(src: str, csv_file: Path, store: Path) -> str:
    b.fresh(store)
    shutil.copyfile(b.DATA / f"empty-migrated-{_template_suffix()}.db", store)
    env = dict(os.environ, PYTHONPATH=src)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, "import", str(csv_file), "--database", b.url(store)],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    line = next((x for x in done.stderr.splitlines() if x.startswith("FIRSTROW")), None)
    if line is None:
        raise SystemExit(f"no first row from {src}: {done.stderr[-500:]}")
    _, cpu, wall, sqlalchemy, modules = line.split()
    load = os.getloadavg()[0]
    return (
        f"cpu {cpu} s  wall {wall} s  sqlalchemy {sqlalchemy:5}  modules {modules}  load {load:.2f}"
    )


def _template_suffix() -> str:
    from cdrgate.storage.schema import HEAD
    from cdrgate.storage.sqlite_head import NEW_STORE_PAGE_SIZE

    return f"{HEAD}-{NEW_STORE_PAGE_SIZE}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("builds", nargs="+", metavar="NAME=SRC")
    args = parser.parse_args()
    builds = [tuple(build.split("=", 1)) for build in args.builds]
    b.say(f"== first_row | {b.machine()}")
    csv_file = b.yeastar_csv(b.seeded_db(args.rows))
    b.migrated_copy(b.DATA / "first-row.db")  # makes the template if missing
    for round_ in range(args.pairs):
        order = builds if round_ % 2 == 0 else builds[::-1]
        for name, src in order:
            b.say(f"  {name:<10} {_first_row(src, csv_file, b.DATA / f'first-row-{name}.db')}")
    for name, _ in builds:
        b.fresh(b.DATA / f"first-row-{name}.db")
    b.fresh(b.DATA / "first-row.db")


if __name__ == "__main__":
    main()
