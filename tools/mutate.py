#!/usr/bin/env python3
"""Mutation check: apply the hand-written mutations of ``tools/mutations.py`` one at a time, run
each one's targeted tests and report the kill rate per module (see ``docs/mutation.md``).

The working tree is never modified. The tree (``vidda/``, ``tests/``, ``configs/``, ``docs/``,
``pyproject.toml``) is copied once into a temporary snapshot and each worker gets its own copy of
it; a mutant edits one file of its worker's copy, pytest runs there (``cwd`` = the copy,
``PYTHONPATH`` = the copy, no bytecode written) and the file is restored afterwards. Before any
mutant runs, a canary checks that ``import vidda`` resolves to the copy (not to the editable
install) and that a deliberately broken copy fails to import, and a baseline runs every targeted
test unmutated: tests failing there are deselected for the mutants (a target that fails to collect
is left out), each with a warning, so a red test never counts as a kill.

Outcome of a mutant: ``killed`` (pytest exits non-zero: failures, collection errors, crashes),
``timeout`` (counted as killed, listed separately), ``survived`` (exit 0) or ``error`` (a fault in
the mutation list: snippet not found exactly once, no target left, exit 4 usage error or exit 5
"no tests collected"); errors are not part of the ratio. The last line of the report is
``killed=K total=N ratio=0.xxx`` with N = killed + survived (timeouts included in K).

Stdlib only. Usage::

    python tools/mutate.py [--module M ...] [--id ID ...] [--jobs N] [--list] [--timeout S]
                           [--json out.json] [--baseline {all,first}] [--keep-temp]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MUTATIONS = REPO / "tools" / "mutations.py"
COPY_DIRS = ("vidda", "tests", "configs", "docs")
COPY_FILES = ("pyproject.toml",)
# -m 'not slow' is also the project's addopts (pyproject.toml); repeated here on purpose.
PYTEST_OPTS = ("-q", "-p", "no:cacheprovider", "-m", "not slow", "-rfE")
NO_TESTS_COLLECTED, USAGE_ERROR = 5, 4
CANARY_MARK = "vidda mutate.py canary: this copy was imported"
TAIL_LINES = 25
REQUIRED = ("id", "module", "file", "old", "new", "desc", "targets")

T = TypeVar("T")
R = TypeVar("R")


class SetupError(RuntimeError):
    """The mutation list or the copy is unusable; the run stops before any mutant."""


@dataclass
class Mutation:
    id: str
    module: str
    file: str
    old: str
    new: str
    desc: str
    targets: list[str]


@dataclass
class Result:
    id: str
    module: str
    file: str
    desc: str
    status: str  # killed | timeout | survived | error
    targets: list[str] = field(default_factory=list)
    returncode: int | None = None
    seconds: float = 0.0
    killed_by: str = ""
    message: str = ""
    tail: str = ""


@dataclass
class MutationList:
    mutations: list[Mutation]
    modules: tuple[str, ...]
    deselect: tuple[str, ...]


# --------------------------------------------------------------------------- loading


def load_mutations(path: Path) -> MutationList:
    """``MUTATIONS`` (and the optional ``MODULES`` tags and ``DESELECT`` node ids) of a file."""
    spec = importlib.util.spec_from_file_location("vidda_mutations", path)
    if spec is None or spec.loader is None:
        raise SetupError(f"cannot load mutation list {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw = getattr(module, "MUTATIONS", None)
    if not isinstance(raw, list) or not raw:
        raise SetupError(f"{path}: MUTATIONS must be a non-empty list")
    errors, mutations = [], []
    for i, entry in enumerate(raw):
        missing = [k for k in REQUIRED if k not in entry] if isinstance(entry, dict) else REQUIRED
        if missing:
            name = entry.get("id", "?") if isinstance(entry, dict) else repr(entry)
            errors.append(f"entry {i} ({name}): missing {', '.join(missing)}")
            continue
        targets = entry["targets"]
        if isinstance(targets, str) or not targets:
            errors.append(f"mutation {entry['id']}: targets must be a non-empty list of paths")
            continue
        mutations.append(Mutation(**{k: entry[k] for k in REQUIRED}))
    modules = tuple(getattr(module, "MODULES", ()))
    seen: set[str] = set()
    for m in mutations:
        if m.id in seen:
            errors.append(f"mutation {m.id}: duplicate id")
        seen.add(m.id)
        if modules and m.module not in modules:
            errors.append(f"mutation {m.id}: unknown module tag {m.module!r}")
        if m.old == m.new:
            errors.append(f"mutation {m.id}: replacement equals the snippet")
    if errors:
        raise SetupError("mutation list errors:\n  " + "\n  ".join(errors))
    return MutationList(mutations, modules, tuple(getattr(module, "DESELECT", ())))


def snippet_error(m: Mutation, root: Path) -> str | None:
    """Why ``m`` cannot be applied to the tree at ``root`` (None when it can)."""
    path = root / m.file
    if not path.is_file():
        return f"mutation {m.id}: file {m.file} not found"
    count = path.read_text(encoding="utf-8").count(m.old)
    if count != 1:
        return (f"mutation {m.id}: snippet occurs {count} times in {m.file} (must be exactly "
                f"once): {m.old!r}")  # fmt: skip
    return None


def resolve_targets(m: Mutation, root: Path, warned: set[str]) -> list[str]:
    """``m``'s targets whose file exists under ``root`` (missing ones warned about once)."""
    found = []
    for t in m.targets:
        if (root / t.split("::", 1)[0]).exists():
            found.append(t)
        elif t not in warned:
            warned.add(t)
            warn(f"target {t} does not exist (yet); skipped")
    return found


def select(mutations: list[Mutation], modules: Sequence[str], ids: Sequence[str]) -> list[Mutation]:
    want_modules = {x for arg in modules for x in arg.split(",") if x}
    want_ids = {x for arg in ids for x in arg.split(",") if x}
    unknown = want_modules - {m.module for m in mutations}
    unknown |= want_ids - {m.id for m in mutations}
    if unknown:
        raise SetupError(f"unknown module tag(s) / id(s): {', '.join(sorted(unknown))}")
    return [m for m in mutations
            if (not want_modules or m.module in want_modules)
            and (not want_ids or m.id in want_ids)]  # fmt: skip


# --------------------------------------------------------------------------- processes


_print_lock = threading.Lock()
_live_lock = threading.Lock()
_LIVE: set[subprocess.Popen] = set()
_STOP = threading.Event()
WARNINGS: list[str] = []


def say(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


def warn(message: str) -> None:
    WARNINGS.append(message)
    say(f"warning: {message}")


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def kill_live() -> None:
    """Kill every running pytest process group (on interrupt)."""
    _STOP.set()
    with _live_lock:
        for proc in list(_LIVE):
            _kill(proc)


def copy_tree(src: Path, dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    dst.mkdir(parents=True)
    for name in COPY_DIRS:
        if (src / name).is_dir():
            shutil.copytree(src / name, dst / name, ignore=ignore, symlinks=True)
    for name in COPY_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def child_env(root: Path, jobs: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)  # only the copy: never the working tree
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no stale .pyc when a file is restored in the same second
    env.pop("PYTHONSTARTUP", None)
    if jobs > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


def run_command(
    cmd: list[str], root: Path, env: dict[str, str], timeout: float | None
) -> tuple[int | None, str, float]:
    """(returncode, or None on timeout; combined output; seconds). The command runs in its own
    process group, which is killed on timeout or interrupt."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    with _live_lock:
        _LIVE.add(proc)
    try:
        out, _ = proc.communicate(timeout=timeout)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        _kill(proc)
        out, _ = proc.communicate()
        rc = None
    except BaseException:
        _kill(proc)
        raise
    finally:
        with _live_lock:
            _LIVE.discard(proc)
    return rc, out or "", time.monotonic() - start


def run_pytest(
    root: Path, targets: Sequence[str], deselect: Iterable[str], env: dict[str, str],
    timeout: float | None, stop_first: bool = True,
) -> tuple[int | None, str, float]:  # fmt: skip
    cmd = [sys.executable, "-m", "pytest", *(("-x",) if stop_first else ()), *PYTEST_OPTS]
    for node in deselect:
        cmd += ["--deselect", node]
    return run_command([*cmd, *targets], root, env, timeout)


def in_pool(fn: Callable[[T], R], items: Sequence[T], jobs: int) -> list[R]:
    """``[fn(x) for x in items]`` on ``jobs`` threads; an interrupt kills the running tests."""
    ex = ThreadPoolExecutor(jobs)
    try:
        out = list(ex.map(fn, items))
    except BaseException:
        kill_live()
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown()
    return out


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def failures(output: str) -> list[str]:
    """Node ids of the ``FAILED`` / ``ERROR`` lines of pytest's short summary."""
    out = []
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            out.append(line.split(" ", 1)[1].split(" - ", 1)[0].strip())
    return out


# --------------------------------------------------------------------------- canary, baseline


def canary(root: Path, env: dict[str, str]) -> None:
    """``import vidda`` must resolve to the copy, and a broken copy must not import."""
    code = "import vidda, sys; sys.stdout.write(vidda.__file__)"
    rc, out, _ = run_command([sys.executable, "-c", code], root, env, 120)
    imported = Path(out.strip().splitlines()[-1]).resolve() if rc == 0 and out.strip() else None
    if imported is None or not imported.is_relative_to(root.resolve()):
        raise SetupError(f"canary: `import vidda` in the copy resolved to {imported or out!r}, "
                         f"not to the copy {root}")  # fmt: skip
    init = root / "vidda" / "__init__.py"
    original = init.read_bytes()
    try:
        init.write_bytes(original + f"\nraise ImportError({CANARY_MARK!r})\n".encode())
        rc, out, _ = run_command([sys.executable, "-c", "import vidda"], root, env, 120)
    finally:
        init.write_bytes(original)
    if rc == 0 or CANARY_MARK not in out:
        raise SetupError("canary: breaking the copy's vidda/__init__.py did not break "
                         "`import vidda`; the tests would not see the mutants")  # fmt: skip
    say(f"canary: vidda imported from {imported.parent}; a broken copy fails to import")


def baseline_units(targets: Sequence[list[str]]) -> list[str]:
    """Distinct targets, a node id left out when its whole file is a target too."""
    units = list(dict.fromkeys(t for ts in targets for t in ts))
    whole = {t for t in units if "::" not in t}
    return [t for t in units if "::" not in t or t.split("::", 1)[0] not in whole]


@dataclass
class Baseline:
    runs: dict[str, dict] = field(default_factory=dict)
    deselect: list[str] = field(default_factory=list)  # failing tests, left out for mutants
    dropped: dict[str, str] = field(default_factory=dict)  # unusable target → why

    def usable(self, target: str) -> bool:
        return target not in self.dropped and target.split("::", 1)[0] not in self.dropped


def run_baseline(units: Sequence[str], pool: queue.Queue[Path], deselect: Sequence[str],
                 jobs: int, timeout: float) -> Baseline:  # fmt: skip
    """Run every unit unmutated (all tests, no ``-x``) and record what the mutants must avoid."""
    base = Baseline()

    def one(unit: str) -> tuple[str, int | None, str, float]:
        w = pool.get()
        try:
            return (unit, *run_pytest(w, [unit], deselect, child_env(w, jobs), timeout,
                                      stop_first=False))  # fmt: skip
        finally:
            pool.put(w)

    say(f"baseline: {len(units)} target(s) unmutated")
    for unit, rc, out, secs in in_pool(one, units, jobs):
        base.runs[unit] = {"returncode": rc, "seconds": round(secs, 2)}
        failed = failures(out)
        state = "ok  " if rc == 0 else "FAIL"
        say(f"  {state} {unit} ({secs:.1f} s)")
        if rc == 0:
            continue
        base.runs[unit]["tail"] = tail(out)
        nodes = [f for f in failed if "::" in f]
        if rc == 1 and nodes and len(nodes) == len(failed):
            base.deselect += nodes
            base.runs[unit]["deselected"] = nodes
            warn(f"baseline: {len(nodes)} test(s) of {unit} fail unmutated; deselected for "
                 "every mutant: " + ", ".join(nodes))  # fmt: skip
            continue
        why = {None: "timed out", NO_TESTS_COLLECTED: "exit 5: collects no tests",
               USAGE_ERROR: "exit 4: usage error"}.get(rc, f"exit {rc}: does not collect")
        base.dropped[unit] = why
        warn(f"baseline: {unit} unusable unmutated ({why}); left out of every mutant's "
             f"targets:\n{tail(out, 8)}")  # fmt: skip
    return base


# --------------------------------------------------------------------------- one mutant


def apply_mutant(root: Path, m: Mutation, targets: list[str], deselect: Sequence[str],
                 env: dict[str, str], timeout: float, why_none: str = "") -> Result:  # fmt: skip
    res = Result(m.id, m.module, m.file, m.desc, "error", targets=list(targets))
    if _STOP.is_set():
        res.message = "interrupted"
        return res
    if not targets:
        res.message = why_none or "no usable target"
        return res
    problem = snippet_error(m, root)
    if problem:
        res.message = problem
        return res
    path = root / m.file
    original = path.read_bytes()
    try:
        path.write_bytes(original.decode("utf-8").replace(m.old, m.new, 1).encode("utf-8"))
        rc, out, secs = run_pytest(root, targets, deselect, env, timeout)
    finally:
        path.write_bytes(original)
    res.returncode, res.seconds = rc, round(secs, 2)
    if _STOP.is_set():
        res.message = "interrupted"
        return res
    if rc is None:
        res.status, res.message = "timeout", f"no result after {timeout:.0f} s"
    elif rc == 0:
        res.status = "survived"
    elif rc in (NO_TESTS_COLLECTED, USAGE_ERROR):
        res.status = "error"
        res.message = ("pytest exit 5: no tests collected" if rc == NO_TESTS_COLLECTED
                       else "pytest exit 4: usage error (bad target?)")  # fmt: skip
    else:
        found = failures(out)
        res.status, res.killed_by = "killed", found[0] if found else f"exit {rc}"
    if res.status != "killed":
        res.tail = tail(out)
    return res


# --------------------------------------------------------------------------- reporting


def module_table(results: Sequence[Result], order: Sequence[str]) -> list[tuple[str, int, int]]:
    rows = []
    for mod in dict.fromkeys([*order, *(r.module for r in results)]):
        scored = [r for r in results if r.module == mod and r.status != "error"]
        if scored:
            rows.append((mod, sum(r.status in ("killed", "timeout") for r in scored), len(scored)))
    return rows


def totals(results: Sequence[Result]) -> tuple[int, int]:
    killed = sum(r.status in ("killed", "timeout") for r in results)
    return killed, killed + sum(r.status == "survived" for r in results)


def report(results: Sequence[Result], modules: Sequence[str]) -> None:
    survivors = [r for r in results if r.status == "survived"]
    timeouts = [r for r in results if r.status == "timeout"]
    errors = [r for r in results if r.status == "error"]
    print(f"\nSurvivors ({len(survivors)}):")
    for r in survivors:
        print(f"  {r.id}  [{r.module}]  {r.file}\n      {r.desc}")
    if timeouts:
        print(f"\nTimeouts, counted as killed ({len(timeouts)}):")
        for r in timeouts:
            print(f"  {r.id}  [{r.module}]  {r.file}: {r.message}")
    if errors:
        print(f"\nErrors in the mutation list, not counted ({len(errors)}):")
        for r in errors:
            print(f"  {r.id}  [{r.module}]  {r.file}: {r.message}")
    rows = module_table(results, modules)
    width = max([len("module"), *(len(m) for m, _, _ in rows)])
    print(f"\n{'module':<{width}}  killed/total  ratio")
    for mod, k, n in rows:
        print(f"{mod:<{width}}  {f'{k}/{n}':>12}  {k / n:.3f}")
    killed, total = totals(results)
    print(f"killed={killed} total={total} ratio={killed / total if total else 0.0:.3f}")


def list_mutations(mutations: Sequence[Mutation]) -> int:
    warned: set[str] = set()
    problems = 0
    for m in mutations:
        error = snippet_error(m, REPO)
        targets = resolve_targets(m, REPO, warned)
        if error:
            problems += 1
            print(f"ERROR {error}")
        if not targets:
            problems += 1
            print(f"ERROR mutation {m.id}: none of its targets exists: {m.targets}")
        print(f"{m.id:<44} {m.module:<14} {m.file}\n    {m.desc}\n    targets: "
              f"{' '.join(targets)}")  # fmt: skip
    by_module: dict[str, int] = {}
    for m in mutations:
        by_module[m.module] = by_module.get(m.module, 0) + 1
    print(f"\n{len(mutations)} mutations in {len(by_module)} modules: "
          + ", ".join(f"{k} {v}" for k, v in by_module.items()))
    return 1 if problems else 0


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--module", action="append", default=[], metavar="M",
                   help="only mutations with this module tag (repeatable, or comma-separated)")
    p.add_argument("--id", action="append", default=[], metavar="ID",
                   help="only these mutation ids (repeatable, or comma-separated)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="parallel workers, each with its own copy (default 1)")
    p.add_argument("--list", action="store_true",
                   help="list (and check) the selected mutations, run nothing")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="per-mutant pytest timeout in seconds (default 300; counts as killed)")
    p.add_argument("--json", type=Path, metavar="OUT", help="write every result to this file")
    p.add_argument("--baseline", choices=("all", "first"), default="all",
                   help="run every distinct target unmutated first (all, default) or only the "
                        "first mutation's targets (first: quicker, failing tests elsewhere "
                        "then count as kills)")  # fmt: skip
    p.add_argument("--mutations", type=Path, default=DEFAULT_MUTATIONS, metavar="FILE",
                   help="mutation list (default tools/mutations.py)")
    p.add_argument("--keep-temp", action="store_true", help="keep the temporary copies")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.timeout <= 0:
        p.error("--jobs must be >= 1 and --timeout > 0")
    return args


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    spec = load_mutations(args.mutations)
    mutations = select(spec.mutations, args.module, args.id)
    if not mutations:
        raise SetupError("no mutation selected")
    if args.list:
        return list_mutations(mutations)

    temp = Path(tempfile.mkdtemp(prefix="vidda-mutate-"))
    try:
        snapshot = temp / "snapshot"
        copy_tree(REPO, snapshot)  # one consistent view of a tree others may be editing
        problems = [e for m in mutations if (e := snippet_error(m, snapshot))]
        if problems:
            raise SetupError("mutation list errors:\n  " + "\n  ".join(problems))
        warned: set[str] = set()
        targets = {m.id: resolve_targets(m, snapshot, warned) for m in mutations}
        empty = [m.id for m in mutations if not targets[m.id]]
        if empty:
            raise SetupError(f"no existing target for: {', '.join(empty)}")
        workers = []
        for i in range(args.jobs):
            workers.append(temp / f"w{i}")
            copy_tree(snapshot, workers[-1])
        canary(workers[0], child_env(workers[0], args.jobs))
        pool: queue.Queue[Path] = queue.Queue()
        for w in workers:
            pool.put(w)

        # baseline: the unmutated copy must pass what the mutants are judged by
        chosen = mutations[:1] if args.baseline == "first" else mutations
        units = baseline_units([targets[m.id] for m in chosen])
        base = run_baseline(units, pool, spec.deselect, args.jobs, args.timeout)
        if not any(v["returncode"] == 0 or v.get("deselected") for v in base.runs.values()):
            raise SetupError("canary: the unmutated copy passes none of the targeted tests")
        deselect = [*spec.deselect, *base.deselect]
        why_none: dict[str, str] = {}
        for m in mutations:
            keep = [t for t in targets[m.id] if base.usable(t)]
            if not keep:
                why_none[m.id] = "no usable target: " + ", ".join(
                    f"{t} ({base.dropped.get(t) or base.dropped.get(t.split('::', 1)[0])})"
                    for t in targets[m.id])  # fmt: skip
            targets[m.id] = keep

        n = len(mutations)
        done = [0]

        def one(m: Mutation) -> Result:
            w = pool.get()
            try:
                res = apply_mutant(w, m, targets[m.id], deselect, child_env(w, args.jobs),
                                   args.timeout, why_none.get(m.id, ""))  # fmt: skip
            finally:
                pool.put(w)
            with _print_lock:
                done[0] += 1
                extra = res.killed_by or res.message
                print(f"[{done[0]:3d}/{n}] {res.status.upper():8s} {m.id} ({m.module}) "
                      f"{res.seconds:.1f} s  {extra}".rstrip(), flush=True)
            return res

        say(f"running {n} mutant(s) with {args.jobs} worker(s), timeout {args.timeout:.0f} s")
        results = in_pool(one, mutations, args.jobs)
    finally:
        if args.keep_temp:
            say(f"temporary copies kept in {temp}")
        else:
            shutil.rmtree(temp, ignore_errors=True)

    wall = time.monotonic() - t0
    print(f"\nwall time {wall:.0f} s ({wall / 60:.1f} min), {args.jobs} worker(s)")
    if args.json:
        killed, total = totals(results)
        data = {
            "killed": killed, "total": total,
            "ratio": round(killed / total, 3) if total else 0.0,
            "wall_s": round(wall, 1), "jobs": args.jobs, "timeout_s": args.timeout,
            "python": sys.version.split()[0], "repo": str(REPO), "argv": sys.argv[1:],
            "modules": {m: {"killed": k, "total": t, "ratio": round(k / t, 3)}
                        for m, k, t in module_table(results, spec.modules)},
            "deselected": deselect, "baseline": base.runs, "warnings": WARNINGS,
            "results": [asdict(r) for r in results],
        }  # fmt: skip
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"results written to {args.json}")
    report(results, spec.modules)
    return 1 if any(r.status == "error" for r in results) else 0


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM behaves like Ctrl-C: running tests are killed and the copies removed."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args)
    except SetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kill_live()
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
