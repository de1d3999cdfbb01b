"""Figure encoding for the report: matplotlib figure -> compact SVG (UTF-8 data URI) or palette PNG (base64).

SVGs are shrunk (geometry rounded to 0.1 pt, prolog, metadata, group ids and line breaks dropped) and embedded
as UTF-8 data URIs (base64 would add a third); a figure whose SVG exceeds :data:`SVG_MAX_BYTES` (dense plots of
large runs) becomes a 64-colour PNG when that is smaller.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass

import matplotlib
import matplotlib.ticker
from markupsafe import Markup
from matplotlib.figure import Figure
from PIL import Image

SVG_MAX_BYTES = 20_000
PNG_DPI = 110
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
    """SVG data URI (PNG when the SVG would exceed SVG_MAX_BYTES, or ``force="png"``); major ticks only on log axes."""
    for ax in fig.axes:
        for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            if axis.get_scale() != "log":
                continue
            axis.set_minor_locator(matplotlib.ticker.NullLocator())
            lo, hi = sorted(lim)
            if not isinstance(axis.get_major_locator(), matplotlib.ticker.FixedLocator) and lo > 0 and hi / lo < 100:
                axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    buf = io.BytesIO()
    with matplotlib.rc_context(rc):
        fig.savefig(buf, format="svg", metadata={"Date": None})
        data, mime = _shrink_svg(buf.getvalue()), "image/svg+xml"
        if len(data) > SVG_MAX_BYTES or force == "png":
            png = _png(fig)
            if force == "png" or 4 * len(png) < 3 * len(data):  # base64 costs 4/3
                data, mime = png, "image/png"
    w, h = fig.get_size_inches()
    uri = svg_uri(data) if mime == "image/svg+xml" else f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    return FigureOut(Markup(uri), alt, caption, kind, len(uri), round(w * 96), round(h * 96))


def _png(fig: Figure) -> bytes:
    """PNG of a dense figure, quantized to a 64-colour palette (3-4x smaller than RGBA, same look for plots)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PNG_DPI, metadata={"Software": None})
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(PNG_COLOURS, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
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
