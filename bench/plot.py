"""A small dependency-free SVG plot for the bench reports."""

from __future__ import annotations

import math


def svg_plot(series: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str, logy: bool = True,
             lines: bool = True) -> str:
    """A small dependency-free SVG plot: {name: [(x, y), ...]}, points joined unless lines=False."""
    W, H, L, B = 640, 400, 70, 50
    pts = [p for s in series.values() for p in s]
    xs = [p[0] for p in pts]
    ys = [math.log10(p[1]) if logy else p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = lambda x: L + (x - x0) / ((x1 - x0) or 1) * (W - L - 20)  # noqa: E731
    sy = lambda y: H - B - ((math.log10(y) if logy else y) - y0) / ((y1 - y0) or 1) * (H - B - 20)  # noqa: E731
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - 10}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="10" x2="{L}" y2="{H - B}" stroke="black"/>',
           f'<text x="{(W + L) / 2}" y="{H - 12}" text-anchor="middle">{xlabel}</text>',
           f'<text x="14" y="{(H - B) / 2}" transform="rotate(-90 14 {(H - B) / 2})" text-anchor="middle">{ylabel}</text>']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        val = 10 ** yv if logy else yv
        y = H - B - (yv - y0) / ((y1 - y0) or 1) * (H - B - 20)
        out.append(f'<text x="{L - 6}" y="{y + 4:.0f}" text-anchor="end">{val:.3g}</text>')
        xv = x0 + (x1 - x0) * i / 4
        out.append(f'<text x="{sx(xv):.0f}" y="{H - B + 16}" text-anchor="middle">{xv:.3g}</text>')
    for k, (name, s) in enumerate(series.items()):
        c = colors[k % len(colors)]
        s = sorted(s)
        if lines:
            out.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
                c, " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)))
        out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{c}"/>' for x, y in s]
        out.append(f'<text x="{W - 150}" y="{24 + 16 * k}" fill="{c}">{name}</text>')
    return "\n".join(out + ["</svg>"]) + "\n"
