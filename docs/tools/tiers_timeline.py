"""Draw docs/tiers-timeline.svg: one member's Silver tier under each `extend_expiration`
option, computed with Tessera's own rules (`loyalty.services.tiers`).

    .venv/bin/python docs/tools/tiers_timeline.py            # writes docs/tiers-timeline.svg

Plain SVG text, no dependency beyond Django (to import the rules; no database is used).
The story: fixed model from 01-01, tiers Blue 0 / Silver 500 / Gold 1500, 12 months; the
member enrolled on 1 June 2024 and buys 600 QP on 15 March 2025, 300 on 1 February 2026
and 250 on 1 October 2026.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("TESSERA_NO_EMBEDDED_DB", "1")

import django  # noqa: E402

django.setup()

from loyalty.models import TierGroup  # noqa: E402
from loyalty.services.tiers import (  # noqa: E402
    period_containing,
    renewal_valid_until,
    upgrade_valid_until,
)

ENROLLED = dt.date(2024, 6, 1)
PURCHASES = [(dt.date(2025, 3, 15), 600), (dt.date(2026, 2, 1), 300), (dt.date(2026, 10, 1), 250)]
SILVER = 500
START, END = dt.date(2025, 1, 1), dt.date(2028, 1, 1)
OPTIONS = ["none", "end_of_month", "qualifying_reset_date", "anniversary_date"]
COLOURS = {"Blue": "#1E6FD9", "Silver": "#8E9196"}

WIDTH, LEFT, RIGHT = 1100, 190, 30
ROW, TOP = 58, 120
DAY = dt.timedelta(days=1)


def x(day: dt.date) -> float:
    span = (END - START).days
    return LEFT + (min(max(day, START), END) - START).days / span * (WIDTH - LEFT - RIGHT)


def qp(group: TierGroup, day: dt.date) -> int:
    """QP of the period containing `day`, counting purchases up to the end of `day`."""
    period = period_containing(group, ENROLLED, day)
    return sum(p for when, p in PURCHASES if period.start <= when <= min(day, period.end))


def story(option: str) -> tuple[list[tuple], list[tuple]]:
    """(segments: tier, from, to or None; markers: day, label) under one option."""
    group = TierGroup(model="fixed", period_start="01-01", extend_expiration=option)
    group.tier_duration_months = 12
    segments, markers = [], []
    tier, since, until = "Blue", START, None
    day = START
    while day < END:
        if until is not None and day == until + DAY:  # assessed at the end of `until`
            points = qp(group, until)
            segments.append((tier, since, until))
            if points >= SILVER:
                markers.append((until, f"retain ({points} QP)"))
                since, until = day, renewal_valid_until(group, ENROLLED, day)
            else:
                markers.append((until, f"down ({points} QP)"))
                tier, since, until = "Blue", day, None
        if (
            tier == "Blue"
            and any(when == day for when, _ in PURCHASES)
            and qp(group, day) >= SILVER
        ):
            segments.append((tier, since, day - DAY))
            markers.append((day, f"up ({qp(group, day)} QP)"))
            tier, since, until = "Silver", day, upgrade_valid_until(group, ENROLLED, day)
        day += DAY
    segments.append((tier, since, until))
    return segments, markers


def svg() -> str:
    rows = len(OPTIONS)
    height = TOP + rows * ROW + 70
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" '
        'font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        '<text x="20" y="28" font-size="16" font-weight="bold">One member, four '
        "extend_expiration options (fixed model from 01-01, Silver at 500 QP, 12 months)</text>",
        '<text x="20" y="48" fill="#555">Purchases: 600 QP on 2025-03-15, 300 on 2026-02-01, '
        "250 on 2026-10-01. Assessment at the end of the validity day, on the QP of the period "
        "containing it.</text>",
    ]
    # qualifying periods and resets
    for year in range(START.year, END.year):
        period = period_containing(TierGroup(model="fixed", period_start="01-01"), ENROLLED,
                                   dt.date(year, 6, 1))  # fmt: skip
        x0, x1 = x(period.start), x(period.end + DAY)
        fill = "#f3f6fa" if year % 2 else "#e8eef6"
        out.append(
            f'<rect x="{x0:.1f}" y="{TOP - 50}" width="{x1 - x0:.1f}" '
            f'height="{rows * ROW + 50}" fill="{fill}"/>'
        )
        points = sum(p for when, p in PURCHASES if period.start <= when <= period.end)
        out.append(
            f'<text x="{(x0 + x1) / 2:.1f}" y="{TOP - 32}" text-anchor="middle" '
            f'font-weight="bold">qualifying period {year} — {points} QP</text>'
        )
        out.append(
            f'<text x="{x1 - 4:.1f}" y="{TOP - 14}" text-anchor="end" fill="#a33">reset ↺</text>'
        )
        out.append(
            f'<line x1="{x1:.1f}" y1="{TOP - 50}" x2="{x1:.1f}" y2="{TOP + rows * ROW}" '
            'stroke="#a33" stroke-dasharray="4 3"/>'
        )
    for i, option in enumerate(OPTIONS):
        y = TOP + i * ROW + 12
        out.append(f'<text x="20" y="{y + 15}" font-weight="bold">{escape(option)}</text>')
        segments, markers = story(option)
        for tier, since, until in segments:
            if since > until if until else False:
                continue
            x0 = x(since)
            x1 = x(until + DAY) if until else x(END)
            out.append(
                f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1):.1f}" height="20" rx="3" '
                f'fill="{COLOURS[tier]}" fill-opacity="0.85"/>'
            )
            label = f"{tier} until {until}" if tier != "Blue" else "Blue (base, no end)"
            if x1 - x0 > 7 * len(label):
                out.append(
                    f'<text x="{x0 + 5:.1f}" y="{y + 14}" fill="#fff">{escape(label)}</text>'
                )
        for day, text in markers:
            cx = x(day + DAY) if not text.startswith("up") else x(day)
            out.append(
                f'<path d="M{cx:.1f},{y - 4} l5,-7 l-10,0 z" fill="#222"/>'
                f'<text x="{cx:.1f}" y="{y + 34}" text-anchor="middle" fill="#222" '
                f'font-size="10">{escape(text)}</text>'
            )
    axis_y = TOP + rows * ROW + 20
    for year in range(START.year, END.year + 1):
        for month in (1, 4, 7, 10):
            day = dt.date(year, month, 1)
            if START <= day <= END:
                out.append(
                    f'<line x1="{x(day):.1f}" y1="{axis_y - 5}" x2="{x(day):.1f}" '
                    f'y2="{axis_y}" stroke="#333"/>'
                    f'<text x="{x(day):.1f}" y="{axis_y + 14}" text-anchor="middle" '
                    f'fill="#333" font-size="10">{day:%Y-%m}</text>'
                )
    out.append(
        f'<line x1="{LEFT}" y1="{axis_y}" x2="{WIDTH - RIGHT}" y2="{axis_y}" stroke="#333"/>'
    )
    out.append(
        f'<text x="20" y="{height - 12}" fill="#555">Generated by docs/tools/tiers_timeline.py '
        "from loyalty.services.tiers. ▼ marks an upgrade (day it is reached) or an assessment "
        "(end of the validity day).</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    target = ROOT / "docs" / "tiers-timeline.svg"
    target.write_text(svg(), encoding="utf-8")
    print(f"wrote {target.relative_to(ROOT)}")
