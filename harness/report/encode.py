"""Figure encoding for the report: matplotlib figure -> compact SVG (UTF-8 data URI) or palette PNG (base64).

SVGs are shrunk (geometry rounded to 0.1 pt, prolog, metadata, group ids and line breaks dropped) and embedded
as UTF-8 data URIs (base64 would add a third); a figure whose SVG exceeds :data:`SVG_MAX_BYTES` (dense plots of
large runs) becomes a 64-colour PNG when that is smaller; a figure whose element count says so goes to PNG
without drawing the SVG.  Log-axis labels are plain text (10⁻³), so matplotlib never parses mathtext.
"""

from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import dataclass

import matplotlib
import matplotlib.ticker
from markupsafe import Markup
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from PIL import Image

SVG_MAX_BYTES = 20_000
PNG_ELEMENTS = 120  # svg_elements() above this: the SVG exceeds SVG_MAX_BYTES (~100 bytes an element)
PNG_DPI = 110
TIGHT_PAD = 0.4  # tight_layout padding, in font sizes (constrained layout's 3-point pads, visually)
PNG_COLOURS = 64


@dataclass
class FigureOut:
    uri: str
    alt: str
    caption: str
    kind: str
    nbytes: int
    width: int = 0  # CSS pixels (96 per inch): reserves the space before a lazy image loads
    height: int = 0


def to_uri(fig: Figure, kind: str, alt: str, caption: str, force: str = "", rc: dict | None = None) -> FigureOut:
    """SVG data URI (PNG when the SVG would exceed SVG_MAX_BYTES, or ``force="png"``); major ticks only on log axes.

    The layout is computed once (:func:`layout_once`) and frozen: each output format is one plain draw.  A figure
    whose SVG would clearly exceed the limit (:func:`svg_elements` above :data:`PNG_ELEMENTS`) goes straight to
    PNG, without drawing the SVG first.
    """
    _log_ticks(fig)
    with matplotlib.rc_context(rc):
        layout_once(fig)
        data, mime = b"", "image/png"
        if force != "png" and svg_elements(fig) <= PNG_ELEMENTS:
            buf = io.BytesIO()
            fig.savefig(buf, format="svg", metadata={"Date": None})
            data, mime = _shrink_svg(buf.getvalue()), "image/svg+xml"
        if mime == "image/png" or len(data) > SVG_MAX_BYTES:
            png = _png(fig)
            if mime == "image/png" or 4 * len(png) < 3 * len(data):  # base64 costs 4/3
                data, mime = png, "image/png"
    w, h = fig.get_size_inches()
    uri = svg_uri(data) if mime == "image/svg+xml" else f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    return FigureOut(Markup(uri), alt, caption, kind, len(uri), round(w * 96), round(h * 96))


def layout_once(fig: Figure) -> None:
    """Lay a constrained-layout figure out once and freeze it (no layout engine left to rerun at every draw).

    Figures whose figure legends sit in a band at the bottom or the top (the report's ``outside lower center``
    legends) get :meth:`~matplotlib.figure.Figure.tight_layout` around their axes with those bands kept clear —
    the same look for about half the cost of constrained layout, which draws the whole figure to measure it;
    others (a legend at the side) get constrained layout's own pass.
    """
    engine = fig.get_layout_engine()
    if not isinstance(engine, ConstrainedLayoutEngine):
        if engine is not None:
            fig.draw_without_rendering()
            fig.set_layout_engine("none")
        return
    fig.set_layout_engine("none")  # legends now sit where loc puts them inside the figure: measure them there
    renderer = fig.canvas.get_renderer()
    height = fig.bbox.height
    bottom, top = 0.0, 1.0
    for leg in fig.legends:
        bb = leg.get_window_extent(renderer)
        if bb.y1 <= 0.5 * height:
            bottom = max(bottom, bb.y1 / height)
        elif bb.y0 >= 0.5 * height:
            top = min(top, bb.y0 / height)
        else:
            fig.set_layout_engine(engine)
            fig.draw_without_rendering()
            fig.set_layout_engine("none")
            return
    fig.tight_layout(pad=TIGHT_PAD, h_pad=TIGHT_PAD, w_pad=TIGHT_PAD, rect=(0.0, bottom, 1.0, top))


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def pow10_label(v: float, _pos: object = None) -> str:
    """A log-axis tick label as plain text: 10⁻³ at powers of ten, else 3 significant digits (no mathtext)."""
    if not (v > 0 and math.isfinite(v)):
        return ""
    k = round(math.log10(v))
    return f"10{str(k).translate(_SUPERSCRIPT)}" if abs(v - 10.0**k) <= 1e-9 * v else f"{v:.3g}"


def _log_ticks(fig: Figure) -> None:
    """Log axes: no minor ticks; 1-2-5 ticks within two decades; plain-text labels everywhere."""
    for ax in fig.axes:
        for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            if axis.get_scale() != "log":
                continue
            axis.set_minor_locator(matplotlib.ticker.NullLocator())
            lo, hi = sorted(lim)
            fixed = isinstance(axis.get_major_locator(), matplotlib.ticker.FixedLocator)
            if not fixed and lo > 0 and hi / lo < 100:
                axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
            elif isinstance(axis.get_major_formatter(), matplotlib.ticker.LogFormatter):
                axis.set_major_formatter(matplotlib.ticker.FuncFormatter(pow10_label))


def svg_elements(fig: Figure) -> int:
    """About how many SVG elements the figure draws (markers, line paths, interval segments, texts, ticks)."""
    n = 0
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_visible():
                n += (len(line.get_xdata()) if line.get_marker() not in (None, "", "None", " ") else 0) + 1
        for coll in ax.collections:
            n += len(coll.get_paths()) if coll.get_visible() else 0
        n += sum(1 for t in ax.texts if t.get_visible())
        n += 2 * (len(ax.xaxis.get_major_ticks()) + len(ax.yaxis.get_major_ticks()))
    for leg in fig.legends:
        n += 2 * len(leg.get_texts())
    return n


def _png(fig: Figure) -> bytes:
    """PNG of a dense figure, quantized to a 64-colour palette (3-4x smaller than RGBA, same look for plots).

    The Agg canvas' raw RGBA goes straight to Pillow (no intermediate PNG to encode and decode again); the fast
    octree quantizer keeps a plot's few flat colours (and is about 4x faster than median cut).
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="rgba", dpi=PNG_DPI)
    raw = buf.getvalue()
    w = int(fig.get_figwidth() * PNG_DPI)
    img = Image.frombuffer("RGBA", (w, len(raw) // (4 * w)), raw, "raw", "RGBA", 0, 1).convert("RGB")
    out = io.BytesIO()
    img.quantize(PNG_COLOURS, method=Image.Quantize.FASTOCTREE).save(out, format="PNG", optimize=True)
    return out.getvalue()


def svg_uri(svg: bytes) -> str:
    """A UTF-8 (not base64: 25% smaller) SVG data URI, safe inside a SINGLE-quoted HTML attribute.

    URL level: ``%`` and ``#`` (fragment) and ``'`` (the attribute's quote) are percent-encoded; HTML level:
    ``&`` becomes ``&amp;``; ``<``, ``>`` and ``"`` are legal as they are in a single-quoted attribute value.
    """
    t = svg.decode("utf-8").replace("%", "%25").replace("#", "%23").replace("'", "%27").replace("&", "&amp;")
    return "data:image/svg+xml," + t


_NUM = re.compile(rb"(-?\d+\.\d)\d*")
_GEOM = re.compile(rb'\b(d|x|y|x1|x2|y1|y2|points)="([^"]*)"')


def _shrink_svg(svg: bytes) -> bytes:
    """Round geometry to 0.1 pt (0.13 px: invisible), drop the XML prolog, metadata, group ids and line breaks: about
    30-40% smaller SVGs; text is untouched.  Ids that are referenced (clip paths, marker definitions) stay."""
    svg = _GEOM.sub(lambda m: m.group(1) + b'="' + _NUM.sub(rb"\1", m.group(2)) + b'"', svg)
    svg = svg[svg.index(b"<svg") :]
    svg = re.sub(rb"<metadata>.*?</metadata>", b"", svg, flags=re.S)
    svg = re.sub(rb'<g id="[^"]*">', b"<g>", svg)
    svg = re.sub(rb">\s*\n\s*<", b"><", svg)
    return re.sub(rb"\s*\n\s*", b" ", svg)
