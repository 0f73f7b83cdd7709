"""Small PNG charts drawn with PIL, so training and evaluation need no plotting library."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
PANEL = (420, 300)
MARGIN = (52, 30, 14, 52)  # left, top, right, bottom


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    step *= next(m for m in (1, 2, 5, 10) if (hi - lo) / (step * m) <= n)
    return [i * step for i in range(math.ceil(lo / step), math.floor(hi / step) + 1)]


def _panel(draw: ImageDraw.ImageDraw, x0: int, panel: dict):
    """panel: title, xlabel, ylabel, and either `series` {name: (xs, ys)} (lines) or `bars` {label: value}."""
    left, top, right, bottom = x0 + MARGIN[0], MARGIN[1], x0 + PANEL[0] - MARGIN[2], PANEL[1] - MARGIN[3]
    bars = panel.get("bars")
    values = list(bars.values()) if bars else [y for _, ys in panel["series"].values() for y in ys]
    values = [v for v in values if v is not None and math.isfinite(v)] or [0.0, 1.0]
    lo, hi = panel.get("ylim") or (min(values), max(values))
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5

    def ymap(y):
        return bottom - (y - lo) / (hi - lo) * (bottom - top)

    draw.text((x0 + PANEL[0] // 2, 6), panel["title"], fill="black", anchor="mt")
    for tick in _ticks(lo, hi):
        draw.line([(left, ymap(tick)), (right, ymap(tick))], fill="#e6e6e6")
        draw.text((left - 4, ymap(tick)), f"{tick:.3g}", fill="black", anchor="rm")
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text(((left + right) // 2, PANEL[1] - 12), panel.get("xlabel", ""), fill="black", anchor="mb")
    draw.text((x0 + 4, top - 16), panel.get("ylabel", ""), fill="black")
    if bars:
        width = (right - left) / max(len(bars), 1)
        for i, (label, value) in enumerate(bars.items()):
            if value is not None and math.isfinite(value):
                x = left + i * width
                draw.rectangle([x + width * 0.15, ymap(value), x + width * 0.85, bottom], fill=COLOURS[0])
            draw.text((left + (i + 0.5) * width, bottom + 4), str(label)[:9], fill="black", anchor="mt")
        return
    xs_all = [x for xs, _ in panel["series"].values() for x in xs] or [0, 1]
    xlo, xhi = min(xs_all), max(xs_all) if max(xs_all) > min(xs_all) else min(xs_all) + 1

    def xmap(x):
        return left + (x - xlo) / (xhi - xlo) * (right - left)

    for tick in _ticks(xlo, xhi):
        draw.text((xmap(tick), bottom + 4), f"{tick:.4g}", fill="black", anchor="mt")
    for i, (name, (xs, ys)) in enumerate(panel["series"].items()):
        colour = COLOURS[i % len(COLOURS)]
        points = [(xmap(x), ymap(y)) for x, y in zip(xs, ys, strict=True) if y is not None and math.isfinite(y)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points if len(points) < 30 else []:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        draw.text((right - 4, top + 4 + 12 * i), name, fill=colour, anchor="ra")


def figure(path: str | Path, panels: list[dict]) -> Path:
    """Panels side by side in one PNG."""
    image = Image.new("RGB", (PANEL[0] * len(panels), PANEL[1]), "white")
    draw = ImageDraw.Draw(image)
    for i, panel in enumerate(panels):
        _panel(draw, i * PANEL[0], panel)
    image.save(path)
    return Path(path)
