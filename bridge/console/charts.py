"""Deliveries and failures per hour (or day) as bar-chart geometry, drawn server-side as SVG.

The template turns these numbers into `<rect>` elements with CSS classes (no inline styles, no script, no
library), so the chart is there with JavaScript off and under a strict Content-Security-Policy.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["bar_chart"]

WIDTH = 480
HEIGHT = 120
LEFT = 16  # room for the first label
TOP = 8
BOTTOM = 18  # room for the axis labels
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def bar_chart(series: list[tuple[int, int, int]], *, now_ms: int, days: int = 1) -> dict[str, Any]:
    """Bars for the last 24 hours (days=1) or 7 days: each bucket's delivered count stacked under its failures."""
    step = HOUR_MS if days <= 1 else DAY_MS
    count = 24 if days <= 1 else 7
    last = now_ms - now_ms % step
    starts = [last - step * (count - 1 - i) for i in range(count)]
    by_start = {start: (delivered, failed) for start, delivered, failed in series}
    peak = max([d + f for d, f in by_start.values()] + [1])
    plot = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT) / count
    bar = max(2.0, slot * 0.7)
    bars, labels = [], []
    total_delivered = total_failed = 0
    for i, start in enumerate(starts):
        delivered, failed = by_start.get(start, (0, 0))
        total_delivered += delivered
        total_failed += failed
        x = round(LEFT + i * slot + (slot - bar) / 2, 1)
        delivered_h = round(plot * delivered / peak, 1)
        failed_h = round(plot * failed / peak, 1)
        when = datetime.fromtimestamp(start / 1000, UTC)
        label = when.strftime("%H:00") if days <= 1 else when.strftime("%a %d")
        bars.append(
            {
                "x": x,
                "width": round(bar, 1),
                "delivered_y": round(TOP + plot - delivered_h, 1),
                "delivered_h": delivered_h,
                "failed_y": round(TOP + plot - delivered_h - failed_h, 1),
                "failed_h": failed_h,
                "title": f"{label} UTC: {delivered} delivered, {failed} failed",
            }
        )
        if days > 1 or i % 6 == 0:
            labels.append({"x": round(LEFT + i * slot + slot / 2, 1), "text": label})
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "baseline": TOP + plot,
        "bars": bars,
        "labels": labels,
        "label_y": HEIGHT - 4,
        "peak": peak,
        "delivered": total_delivered,
        "failed": total_failed,
    }
