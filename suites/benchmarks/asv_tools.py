"""Drive asv (airspeed velocity) in the project's own environment: the ``make asv*`` targets.

``python -m suites.benchmarks.asv_tools run``            benchmark the current checkout; results saved under HEAD's hash
``python -m suites.benchmarks.asv_tools compare BASE``   export BASE and HEAD (``git archive``), benchmark both with
                                               the current benchmarks, print ``asv compare``
``python -m suites.benchmarks.asv_tools publish``        build the static dashboard (.asv/html; view: ``asv preview``),
                                               its CDN assets bundled from docs/asv/vendor
``python -m suites.benchmarks.asv_tools demo``           scratch clone + a deliberately worse commit -> compare

asv runs with ``--python=same`` (environment type ``existing``): nothing is installed or built, and the
code under test is chosen with ``PYTHONPATH`` (the checkout itself, or a commit exported under
``.asv/src/<sha>``), so it works on a fresh clone without network.  Benchmarks always come from the
current checkout (``suites/benchmarks`` and ``suites/regression.toml``), as asv intends: the same
measurements applied to the code of each commit.  Thread counts are pinned (``--threads``, default 1) for
every backend and every commit alike.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

CONFIG = "asv.conf.json"
DEFAULT_FACTOR = 1.2
SRC_DIR = Path(".asv") / "src"
DEMO_BENCH = r"score_function_rloo'?, '(numpy|torch):cpu'?, 'bernoulli"
DEMO_PATCH = """

# --- asv regression demo (scratch clone only): RLOO baseline switched off, 2 ms sleep per call -------
def _asv_demo_worsen() -> None:
    import time

    from harness.registry import get_declaration

    plain, rloo = get_declaration("score_function"), get_declaration("score_function_rloo")
    for backend in ("numpy", "torch"):

        def worse(ctx, _fn=plain.impls[backend].fn):
            time.sleep(0.002)
            return _fn(ctx)

        rloo.impls[backend].fn = worse


_asv_demo_worsen()
"""


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def repo_root(start: Path | None = None) -> Path:
    return Path(_git(start or Path.cwd(), "rev-parse", "--show-toplevel"))


def resolve(root: Path, rev: str) -> str:
    """Full commit hash of ``rev`` (a branch, tag, hash, HEAD~1 ...)."""
    try:
        return _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"error: {rev!r} is not a commit of {root}") from None


def export_commit(root: Path, sha: str) -> Path:
    """The tree of ``sha`` under .asv/src/<sha> (``git archive``; the repository is not touched)."""
    dest = root / SRC_DIR / sha
    if (dest / ".asv-export-complete").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    blob = subprocess.run(["git", "archive", "--format=tar", sha], cwd=root, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    (dest / ".asv-export-complete").write_text(sha + "\n")
    return dest


def asv_env(root: Path, code_root: Path, threads: int) -> dict[str, str]:
    """Environment of the asv process: the code under test first on PYTHONPATH, threads pinned."""
    env = dict(os.environ)
    # asv's benchmark runner drops PYTHONPATH entries from sys.path unless they are in ASV_PYTHONPATH
    env["PYTHONPATH"] = os.pathsep.join([str(code_root), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["ASV_PYTHONPATH"] = str(code_root)
    env["STOCHGRAD_ASV_CODE_ROOT"] = str(code_root)  # the benchmarks check that they import this code
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    xla = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} intra_op_parallelism_threads={threads}"
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + xla).strip()
    env.setdefault("PYTHONUNBUFFERED", "1")
    # jax: compiled executables are cached on disk (keyed by the program), so a jitted estimator compiles
    # once per commit instead of once per benchmark process; compilation happens in setup either way
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(root / ".asv" / "jax-cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    return env


def asv_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "asv", *args]


def ensure_machine(root: Path, machine: str | None, config: str) -> None:
    """Record this machine's description (``asv machine --yes``) unless asv already knows it."""
    name = machine or socket.gethostname()
    path = Path(os.path.expanduser("~/.asv-machine.json"))
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if name in known:
        return
    cmd = asv_cmd("machine", "--yes", "--config", config) + (["--machine", machine] if machine else [])
    subprocess.run(cmd, cwd=root, check=True, stdout=subprocess.DEVNULL)


def run_asv(
    root: Path,
    code_root: Path,
    sha: str,
    *,
    config: str = CONFIG,
    bench: str | None = None,
    quick: bool = False,
    machine: str | None = None,
    threads: int = 1,
    extra: Sequence[str] = (),
    env_extra: dict[str, str] | None = None,
) -> int:
    """``asv run --python=same --set-commit-hash sha`` with ``code_root`` importable; asv's exit status."""
    ensure_machine(root, machine, config)
    cmd = asv_cmd("run", "--config", config, "--python=same", "--set-commit-hash", sha, "--record-samples")
    cmd += (["--bench", bench] if bench else []) + (["--quick"] if quick else [])
    cmd += (["--machine", machine] if machine else []) + list(extra)
    env = {**asv_env(root, code_root, threads), **(env_extra or {})}
    print(f"asv: benchmarking {sha[:10]} with code from {code_root}", flush=True)
    with tempfile.TemporaryDirectory(prefix="stochgrad-asv-memo-") as memo:
        env["STOCHGRAD_ASV_MEMO"] = memo  # accuracy statistics shared by the track_ benchmarks of this run
        return subprocess.run(cmd, cwd=root, env=env).returncode


def compare_output(
    root: Path,
    base: str,
    head: str,
    *,
    config: str = CONFIG,
    factor: float = DEFAULT_FACTOR,
    machine: str | None = None,
) -> str:
    cmd = asv_cmd("compare", "--config", config, "--factor", str(factor), "--split", base, head)
    cmd += ["--machine", machine] if machine else []
    return subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout


def flagged(output: str) -> dict[str, list[str]]:
    """Benchmark rows of an ``asv compare`` table by mark: '+' worse, '-' better, '!' newly failing."""
    out: dict[str, list[str]] = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 7 and cells[1] in ("+", "-", "!", "*", "x", "") and "." in cells[5]:
            out.setdefault(cells[1] or " ", []).append(cells[5])
    return out


def condense(output: str) -> tuple[str, int]:
    """Drop table rows that are n/a in both commits (skipped or not applicable); return (text, dropped)."""
    keep, dropped = [], 0
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 7 and cells[2] == "n/a" and cells[3] == "n/a":
            dropped += 1
            continue
        keep.append(line)
    return "\n".join(keep), dropped


def _dirty(root: Path) -> bool:
    return bool(_git(root, "status", "--porcelain", "--untracked-files=no"))


def cmd_run(a: argparse.Namespace) -> int:
    root = repo_root()
    sha = resolve(root, "HEAD")
    if _dirty(root):
        print(f"asv: note: uncommitted changes are benchmarked too; results are stored under HEAD {sha[:10]}")
    return run_asv(root, root, sha, bench=a.bench, quick=a.quick, machine=a.machine, threads=a.threads, extra=a.extra)


def cmd_compare(a: argparse.Namespace) -> int:
    root = repo_root()
    shas = [resolve(root, a.base), resolve(root, a.head)]
    for sha in shas:
        code = export_commit(root, sha)
        rc = run_asv(root, code, sha, bench=a.bench, quick=a.quick, machine=a.machine, threads=a.threads, extra=a.extra)
        if rc not in (0, 2):  # asv exits 2 when some benchmarks failed; the comparison shows them
            return rc
    out = compare_output(root, shas[0], shas[1], factor=a.factor, machine=a.machine)
    marks = flagged(out)
    text, dropped = condense(out)
    print(text)
    if dropped:
        print(f"({dropped} rows that are n/a in both commits not shown: not applicable, unavailable or not selected)")
    print(
        f"asv compare {a.base} ({shas[0][:10]}) -> {a.head} ({shas[1][:10]}), factor {a.factor}: "
        f"{len(marks.get('+', []))} worse, {len(marks.get('-', []))} better, {len(marks.get('!', []))} newly failing"
    )
    return 1 if a.strict and (marks.get("+") or marks.get("!")) else 0


# --- publish: the static dashboard, with its CDN assets bundled so it works offline -----------------------
VENDOR_DIR = Path("docs") / "asv" / "vendor"  # relative to the repository root
VENDOR_MAP = {  # CDN URL in asv's index.html -> vendored file (see docs/asv/vendor/README.md)
    "https://code.jquery.com/jquery-3.3.1.min.js": "jquery-3.3.1.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": "flot/jquery.flot.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js": "flot/jquery.flot.time.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js": "flot/jquery.flot.selection.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js": "flot/jquery.flot.categories.js",
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js": "flot/jquery.flot.orderBars.js",
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js": "stupidtable.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": "md5.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js": "bootstrap/js/bootstrap.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css": "bootstrap/css/bootstrap.min.css",
}
_ASSET_TAG = re.compile(r"<(script|link)\b[^>]*\b(?:src|href)=\"(https?://[^\"]+)\"[^>]*>")
_SRI_ATTRS = re.compile(r'\s(?:integrity|crossorigin|referrerpolicy)="[^"]*"')


def bundle_offline(html_dir: Path, vendor_dir: Path) -> list[str]:
    """Copy the vendored assets into ``html_dir/vendor`` and point every page's CDN <script>/<link> at them.

    Integrity, crossorigin and referrerpolicy attributes are dropped (the local copies are not the CDN's
    bytes, and crossorigin breaks file:// loads).  Returns the CDN URLs replaced; raises SystemExit naming any
    asset reference left unknown (an asv upgrade that loads something new).
    """
    shutil.copytree(vendor_dir, html_dir / "vendor", dirs_exist_ok=True)
    replaced: list[str] = []
    for page in sorted(html_dir.glob("*.html")):
        text = page.read_text(encoding="utf-8")
        unknown = [u for _, u in _ASSET_TAG.findall(text) if u not in VENDOR_MAP]
        if unknown:
            raise SystemExit(f"error: {page}: CDN assets with no vendored copy in {vendor_dir}: {unknown}")

        def local(m: re.Match[str]) -> str:
            replaced.append(m.group(2))
            tag = m.group(0).replace(m.group(2), "vendor/" + VENDOR_MAP[m.group(2)])
            return _SRI_ATTRS.sub("", tag)

        page.write_text(_ASSET_TAG.sub(local, text), encoding="utf-8")
    return replaced


def cmd_publish(a: argparse.Namespace) -> int:
    root = repo_root()
    rc = subprocess.run(asv_cmd("publish", "--config", CONFIG), cwd=root).returncode
    if rc == 0:
        html = root / ".asv" / "html"
        n = len(bundle_offline(html, root / VENDOR_DIR))
        print(f"dashboard: {html}/index.html ({n} CDN assets bundled: works offline)")
        print(f"view it:   {Path(sys.executable).parent / 'asv'} preview --config {CONFIG}  (http://127.0.0.1:8080)")
    return rc


def cmd_demo(a: argparse.Namespace) -> int:
    """Scratch clone of the checkout + a commit switching the RLOO baseline off and adding a sleep."""
    root = repo_root()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="stochgrad-asv-demo-"))
    scratch = work / "repo"
    files = _git(root, "ls-files", "-co", "--exclude-standard", "-z").split("\0")
    scratch.mkdir(parents=True)
    for f in filter(None, files):
        if (root / f).is_file():
            (scratch / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / f, scratch / f)
    g = ["-c", "user.name=asv demo", "-c", "user.email=asv-demo@localhost", "-c", "commit.gpgsign=false"]
    _git(scratch, "init", "-q")
    _git(scratch, "add", "-A")
    _git(scratch, *g, "commit", "-q", "-m", "base: snapshot of the checkout")
    with open(scratch / "estimators" / "score_function.py", "a") as fh:
        fh.write(DEMO_PATCH)
    _git(scratch, *g, "commit", "-q", "-am", "demo: RLOO baseline off + 2 ms sleep (deliberate regression)")
    cmd = [
        sys.executable,
        "-m",
        "suites.benchmarks.asv_tools",
        "compare",
        "HEAD~1",
        "--head",
        "HEAD",
        "--bench",
        a.bench,
    ]
    cmd += ["--factor", str(a.factor), "--threads", str(a.threads)] + (["--machine", a.machine] if a.machine else [])
    print(f"asv demo: scratch clone {scratch}", flush=True)
    rc = subprocess.run(cmd, cwd=scratch, env={**os.environ, "PYTHONPATH": str(scratch)}).returncode
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m suites.benchmarks.asv_tools", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(s: argparse.ArgumentParser) -> None:
        s.add_argument("--bench", "-b", help="asv --bench regex (benchmark names and parameter strings)")
        s.add_argument("--quick", action="store_true", help="asv --quick: one sample per benchmark")
        s.add_argument("--machine", help="asv machine name (default: this host's name)")
        s.add_argument("--threads", type=int, default=1, help="threads for every backend (default 1)")
        s.add_argument("--rounds", type=int, help="asv rounds: repeat every benchmark in N interleaved passes")

    s = sub.add_parser("run", help="benchmark the current checkout (results under HEAD's hash)")
    common(s)
    s.set_defaults(fn=cmd_run)
    s = sub.add_parser("compare", help="benchmark BASE and HEAD, print asv compare")
    s.add_argument("base")
    s.add_argument("--head", default="HEAD")
    s.add_argument("--factor", type=float, default=DEFAULT_FACTOR)
    s.add_argument("--strict", action="store_true", help="exit 1 when something got worse or fails")
    common(s)
    s.set_defaults(fn=cmd_compare)
    s = sub.add_parser("publish", help="build the static dashboard in .asv/html")
    s.set_defaults(fn=cmd_publish)
    s = sub.add_parser("demo", help="deliberately worsened commit in a scratch clone -> asv compare")
    s.add_argument("--workdir", help="where to create the scratch clone (default: a temporary folder)")
    s.add_argument("--keep", action="store_true", help="keep the scratch clone")
    s.add_argument("--factor", type=float, default=DEFAULT_FACTOR)
    s.add_argument("--bench", default=DEMO_BENCH)
    s.add_argument("--machine")
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(fn=cmd_demo)
    a, extra = p.parse_known_args(argv)
    if extra and a.cmd not in ("run", "compare"):
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    a.extra = [x for x in extra if x != "--"]  # passed on to `asv run`
    if getattr(a, "rounds", None):
        a.extra += ["--attribute", f"rounds={a.rounds}"]
    return int(a.fn(a))


if __name__ == "__main__":
    sys.exit(main())
