"""Runs the mutation battery (tests/suite_mutations.py): each case in a forked child, judged by the promise.

Each case runs in a forked child (the parent has imported the harness once) inside its own directory, with a
timeout, so a case that hangs or allocates terabytes is counted as failed, not fatal; "nothing written" is
checked by snapshotting the case's directory tree (size, mtime, mode of every entry) before and after.

``cd tests && PYTHONPATH=<checkout>:$PWD python -m mutation_harness`` prints the counts (clean / tried) for the
suite mutations, the CLI cases and the training cases (tests/train_mutations.py), for whatever ``harness`` is first
on ``PYTHONPATH`` (this is how the
before/after counts in docs/notes/hardening.md were measured).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import train_mutations
from cli_mutations import _TEMPLATES, cli_cases
from suite_mutations import Case, suite_cases
from train_mutations import train_cases


# -- running cases ---------------------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out


@dataclass
class Outcome:
    name: str
    rc: int | None
    stderr: str
    written: list[str]
    clean: bool
    why: str


def run_case(case: Case, where: Path, timeout: float = 60.0) -> Outcome:
    """Run one case in a forked child inside ``where/<n>/work`` and judge it against the promise."""
    where.mkdir(parents=True, exist_ok=True)
    _TEMPLATES["root"] = where.parent
    train_mutations.TEMPLATES["root"] = where.parent
    top = where / "box"
    work = top / "a" / "work"  # two levels down so a name like ../../x lands inside ``top``
    work.mkdir(parents=True)
    errf, resf = where / "stderr.txt", where / "result.json"
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.chdir(work)
            argv = case.setup(work)
            before = snapshot(top)
            fd = os.open(errf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 2)
            os.dup2(fd, 1)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            sys.stdout = os.fdopen(1, "w", buffering=1)
            from harness.cli.main import main

            try:
                rc = main(argv)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
                rc = -1
            after = snapshot(top)
            written = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            resf.write_text(json.dumps({"rc": rc, "written": written}))
        except BaseException:
            with open(errf, "a") as fh:
                fh.write("SETUP FAILED\n" + traceback.format_exc())
            code = 3
        finally:
            os._exit(code)
    t0 = time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - t0 > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return Outcome(case.name, None, "", [], False, f"timed out after {timeout:.0f} s")
        time.sleep(0.02)
    err = errf.read_text(errors="replace") if errf.exists() else ""
    if not resf.exists():
        return Outcome(case.name, None, err, [], False, "setup failed or child died")
    res = json.loads(resf.read_text())
    rc, written = res["rc"], res["written"]
    problems = []
    if rc != case.expect_rc:
        problems.append(f"exit {rc}, expected {case.expect_rc}")
    if "Traceback" in err:
        problems.append("traceback")
    if case.expect_rc == 2 and "error:" not in err:
        problems.append("no 'error:' line")
    if written and not case.may_write:
        problems.append(f"wrote {written[:3]}")
    return Outcome(case.name, rc, err, written, not problems, "; ".join(problems))


def run_battery(cases: list[Case], where: Path, timeout: float = 60.0) -> list[Outcome]:
    from harness import registry

    registry.ensure_loaded()
    import harness.cli.main  # noqa: F401  (imported once in the parent; children inherit it)
    import harness.report  # noqa: F401
    import harness.runs.suite_run  # noqa: F401
    import harness.training  # noqa: F401

    return [run_case(c, where / f"{i:03d}", timeout) for i, c in enumerate(cases)]


def main() -> int:
    import tempfile

    timeout = float(os.environ.get("MUTATION_TIMEOUT", "20"))
    with tempfile.TemporaryDirectory(prefix="stochgrad-mut-") as tmp:
        batteries = (("suite mutations", suite_cases()), ("CLI cases", cli_cases()), ("training cases", train_cases()))
        for label, cases in batteries:
            outs = run_battery(cases, Path(tmp) / label.replace(" ", "_"), timeout)
            bad = [o for o in outs if not o.clean]
            print(f"{label}: {len(outs) - len(bad)}/{len(outs)} handled cleanly")
            for o in outs if os.environ.get("MUTATION_VERBOSE") else bad:
                last = o.stderr.strip().splitlines()[-1:] if o.stderr.strip() else [""]
                print(f"  {'clean' if o.clean else 'NOT CLEAN'}  {o.name}: {o.why} | {last[0][:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
