"""The report's speed-ups keep its content: figures drawn in worker processes, laid out once, encoded by size.

- :class:`FigurePipeline` gives results in submission order and skips exactly the jobs a serial run would skip
  (the figure budget), with and without worker processes;
- a report drawn by two workers is byte-identical to the serial one (timestamps aside), budget included;
- log-axis labels are plain text (no mathtext), figure legends stay clear of the axes after ``layout_once``,
  and a figure whose element count predicts an SVG over the limit is a PNG.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine

from harness.report import build_report, encode, plots
from harness.report.data import load_runs
from harness.report.pipeline import FigurePipeline
from harness.report.sections import build_sections, prepare
from harness.report.workloads import relabel_groups
from tests.support.demo import synthetic_run


@pytest.mark.parametrize("workers", [0, 2])
def test_pipeline_is_in_order_and_stops_at_the_budget(workers: int) -> None:
    got: list[tuple[int, object, bool]] = []
    total = {"sum": 0}

    def done(k: int):
        def f(result: object, skipped: bool) -> None:
            got.append((k, result, skipped))
            if not skipped:
                total["sum"] += result

        return f

    with FigurePipeline(workers, window=3) as pipe:
        for k in range(12):
            pipe.submit(pow, 2, k, on_done=done(k), wanted=lambda: total["sum"] < 100)
        pipe.drain()
    assert [k for k, _, _ in got] == list(range(12))
    kept = [r for _, r, s in got if not s]
    assert kept == [2**k for k in range(7)]  # 1 + 2 + ... + 64 = 127: the 8th job finds the budget spent
    assert all(s for _, _, s in got[7:])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_run(
        tmp_path_factory.mktemp("pipe") / "run",
        n_estimators=3,
        dims=(1, 10),
        Ls=(1, 4),
        backends=("numpy", "torch"),
        n_problems=2,
    )


def _strip(html: str) -> str:
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC|built in [\d.]+ s", "", html)


def test_parallel_report_equals_the_serial_one(run: Path, tmp_path: Path) -> None:
    serial = build_report([run], tmp_path / "serial.html", workers=0).read_text(encoding="utf-8")
    parallel = build_report([run], tmp_path / "parallel.html", workers=2).read_text(encoding="utf-8")
    assert serial.count("<img") >= 8
    assert _strip(serial) == _strip(parallel)


def test_figure_budget_is_applied_in_instance_order(run: Path) -> None:
    df, _ = load_runs([run])
    df = relabel_groups(df)
    pooled, agree = prepare(df)
    out = {}
    for workers in (0, 2):
        secs = build_sections(df, pooled, agree, collapse=False, fig_budget=40_000, workers=workers)
        out[workers] = [(len(i.figures), i.note[:20], [f.uri for f in i.figures]) for s in secs for i in s.instances]
    assert out[0] == out[2]
    drawn = [n for n, _, _ in out[0]]
    k = drawn.index(0)
    assert k > 0 and all(n > 0 for n in drawn[:k]) and not any(drawn[k:]), drawn
    assert all(note.startswith("Figures omitted") for _, note, _ in out[0][k:])


def _figure(n_points: int, legend: bool = True) -> Figure:
    with matplotlib.rc_context(plots.RC):
        fig = Figure(figsize=(6.8, 3.0), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2)
        x = np.logspace(-3, 2, n_points)
        for ax in axes:
            ax.plot(x, 1 / x, marker="o", label="a")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("variance")
        if legend:
            fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=1)
    return fig


def test_log_labels_are_plain_text_and_the_legend_stays_clear() -> None:
    assert [encode.pow10_label(v) for v in (1e-3, 1.0, 100.0, 0.2, 0)] == ["10⁻³", "10⁰", "10²", "0.2", ""]
    fig = _figure(12)
    out = plots.to_uri(fig, "t", "alt", "cap")
    assert out.uri.startswith("data:image/svg+xml,") and "10⁻³" in out.uri
    assert not isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)  # laid out once, frozen
    renderer = fig.canvas.get_renderer()
    leg = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        assert ax.get_tightbbox(renderer).y0 >= leg.y1 - 1  # the legend band is below every axes' labels
        assert ax.get_tightbbox(renderer).x0 >= 0 and ax.get_tightbbox(renderer).x1 <= fig.bbox.width + 1


def test_dense_figures_go_straight_to_png(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above PNG_ELEMENTS no SVG is drawn; the prediction matches: such a figure's SVG is over the limit."""
    svgs: list[int] = []
    orig = encode._shrink_svg
    monkeypatch.setattr(encode, "_shrink_svg", lambda b: svgs.append(len(orig(b))) or orig(b))
    dense = _figure(200)
    assert encode.svg_elements(dense) > encode.PNG_ELEMENTS
    assert plots.to_uri(dense, "t", "a", "c").uri.startswith("data:image/png;base64,") and not svgs
    monkeypatch.setattr(encode, "PNG_ELEMENTS", 10**9)
    assert plots.to_uri(_figure(200), "t", "a", "c").uri.startswith("data:image/png;base64,")
    assert svgs and svgs[0] > encode.SVG_MAX_BYTES
    sparse = _figure(5)
    assert encode.svg_elements(sparse) <= encode.PNG_ELEMENTS
    assert plots.to_uri(sparse, "t", "a", "c").uri.startswith("data:image/svg+xml,")
