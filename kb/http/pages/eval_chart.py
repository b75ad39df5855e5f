"""A small inline SVG of runs over time: one polyline per measure, drawn from numbers only (no user text)."""

from __future__ import annotations

from collections.abc import Sequence

from kb.db.store.eval_runs import EvalRunRecord

WIDTH, HEIGHT, PAD = 420, 140, 24
SERIES = (("hit@1", "#7a5af8"), ("hit@5", "#0b7285"))


def runs_chart(runs: Sequence[EvalRunRecord]) -> dict:
    """Points (oldest first) of each measure on a 0..1 axis, ready for the template to draw."""
    done = [r for r in sorted(runs, key=lambda r: r.id) if r.status == "done" and r.totals.get("hit@5") is not None]
    step = (WIDTH - 2 * PAD) / max(len(done) - 1, 1)
    series = []
    for measure, colour in SERIES:
        points = [
            (round(PAD + i * step, 1), round(HEIGHT - PAD - (HEIGHT - 2 * PAD) * float(r.totals[measure]), 1), r)
            for i, r in enumerate(done)
        ]
        series.append({"measure": measure, "colour": colour, "points": points})
    return {"width": WIDTH, "height": HEIGHT, "pad": PAD, "series": series, "count": len(done)}
