"""Plain SVG pictures of the tiny model: its state-transition graph and its training curves."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from html import escape

from kb.explain.strings import TEXT, resolve_language

NODE_RADIUS = 24
TOKEN_COLORS = {"1": "#2563eb", "0": "#ea580c"}
SERIES_COLORS = ("#2563eb", "#16a34a", "#9333ea", "#db2777")
INK = "#1e293b"
MUTED = "#64748b"
FONT = 'font-family="ui-sans-serif, system-ui, sans-serif"'
MONO = 'font-family="ui-monospace, SFMono-Regular, Menlo, monospace"'

# The de Bruijn graph of 3-bit states drawn left to right: 000 and 111 (the self-loops) at the ends,
# the reciprocal pair 010 <-> 101 in the middle, so no arrow crosses a node.
DE_BRUIJN_3 = {
    "000": (0.0, 1.0),
    "001": (1.0, 0.0),
    "100": (1.0, 2.0),
    "010": (2.0, 0.5),
    "101": (2.0, 1.5),
    "011": (3.0, 0.0),
    "110": (3.0, 2.0),
    "111": (4.0, 1.0),
}


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _text(
    x: float, y: float, content: str, *, size: int = 12, fill: str = INK, anchor: str = "middle", extra: str = ""
) -> str:
    """A text element, vertically centred on y unless `extra` says otherwise; content is escaped here."""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" dominant-baseline="central" font-size="{size}" '
        f'fill="{fill}" {extra or FONT}>{escape(content)}</text>'
    )


def _open_svg(css_class: str, width: int, height: int, title: str, fallback_title: str) -> list[str]:
    """The root element with an accessible name, and the visible title when there is one."""
    name = title or fallback_title
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_attr(name)}">',
        f"<title>{escape(name)}</title>",
    ]
    if title:
        parts.append(_text(width / 2, 22, title, size=16, extra=f'font-weight="600" {FONT}'))
    return parts


def _layout(states: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Pixel centres: the hand-made de Bruijn layout for 3-bit states, a circle for other lengths."""
    if set(states) == set(DE_BRUIJN_3):
        return {s: (110 + 130 * x, 70 + 125 * y) for s, (x, y) in DE_BRUIJN_3.items()}
    step = 2 * math.pi / len(states)
    angles = {s: i * step - math.pi / 2 for i, s in enumerate(states)}
    return {s: (370 + 170 * math.cos(a), 225 + 105 * math.sin(a)) for s, a in angles.items()}


def _arrowhead(tip: tuple[float, float], toward_tip: tuple[float, float], width: float, color: str) -> str:
    length, half = 8 + 1.2 * width, 4 + 0.9 * width
    ux, uy = toward_tip
    bx, by = tip[0] - ux * length, tip[1] - uy * length
    points = [tip, (bx - uy * half, by + ux * half), (bx + uy * half, by - ux * half)]
    return f'<polygon points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in points)}" fill="{color}"/>'


def _unit(dx: float, dy: float) -> tuple[float, float]:
    norm = math.hypot(dx, dy) or 1.0
    return dx / norm, dy / norm


def _edge_geometry(a: tuple[float, float], b: tuple[float, float], centre: tuple[float, float], width: float):
    """Path data, arrow tip, tip direction and label point for an arrow from centre a to centre b."""
    head = 8 + 1.2 * width
    if a == b:
        out = _unit(a[0] - centre[0], a[1] - centre[1])
        angle = math.atan2(out[1], out[0])
        rim = [
            (a[0] + NODE_RADIUS * math.cos(angle + d), a[1] + NODE_RADIUS * math.sin(angle + d)) for d in (-0.6, 0.6)
        ]
        far = [(a[0] + 85 * math.cos(angle + d), a[1] + 85 * math.sin(angle + d)) for d in (-0.7, 0.7)]
        toward_tip = _unit(rim[1][0] - far[1][0], rim[1][1] - far[1][1])
        end = (rim[1][0] - toward_tip[0] * head, rim[1][1] - toward_tip[1] * head)
        path = "M{:.1f},{:.1f} C{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}".format(*rim[0], *far[0], *far[1], *end)
        return path, rim[1], toward_tip, (a[0] + 76 * out[0], a[1] + 76 * out[1])
    ux, uy = _unit(b[0] - a[0], b[1] - a[1])
    bend = 0.16 * math.dist(a, b)
    control = ((a[0] + b[0]) / 2 - uy * bend, (a[1] + b[1]) / 2 + ux * bend)
    leave = _unit(control[0] - a[0], control[1] - a[1])
    arrive = _unit(b[0] - control[0], b[1] - control[1])
    start = (a[0] + leave[0] * NODE_RADIUS, a[1] + leave[1] * NODE_RADIUS)
    tip = (b[0] - arrive[0] * NODE_RADIUS, b[1] - arrive[1] * NODE_RADIUS)
    end = (tip[0] - arrive[0] * head, tip[1] - arrive[1] * head)
    label = tuple(0.25 * s + 0.5 * c + 0.25 * e for s, c, e in zip(start, control, tip))
    path = f"M{start[0]:.1f},{start[1]:.1f} Q{control[0]:.1f},{control[1]:.1f} {end[0]:.1f},{end[1]:.1f}"
    return path, tip, arrive, label


LABEL_BOX = (36.0, 17.0)  # room a "100%" label needs, in pixels


def spread_labels(
    points: Sequence[tuple[float, float]], box: tuple[float, float] = LABEL_BOX
) -> list[tuple[float, float]]:
    """Move label points apart until no two label boxes overlap (arrows meeting near one spot put them together)."""
    moved = [list(point) for point in points]
    for _ in range(200):
        clash = False
        for i in range(len(moved)):
            for j in range(i + 1, len(moved)):
                dx, dy = moved[j][0] - moved[i][0], moved[j][1] - moved[i][1]
                if abs(dx) >= box[0] or abs(dy) >= box[1]:
                    continue
                clash = True
                # part along the axis that needs less movement; a tie (same point) parts them vertically
                if box[0] - abs(dx) < box[1] - abs(dy):
                    push, axis = (box[0] - abs(dx)) / 2 + 0.5, 0
                    sign = 1.0 if dx >= 0 else -1.0
                else:
                    push, axis = (box[1] - abs(dy)) / 2 + 0.5, 1
                    sign = 1.0 if dy > 0 or (dy == 0 and j > i) else -1.0
                moved[i][axis] -= sign * push
                moved[j][axis] += sign * push
        if not clash:
            break
    return [(x, y) for x, y in moved]


def _edge_parts(state: str, token: str, target: str, p: float, geometry, label, words: dict) -> list[str]:
    """One arrow of the graph: its path, head, hover title and probability label."""
    path, tip, toward_tip = geometry
    stroke, color = 1 + 7 * p, TOKEN_COLORS[token]
    halo = f'stroke="white" stroke-width="3" paint-order="stroke" {FONT}'
    return [
        f'<g class="edge" data-from="{state}" data-to="{target}" data-token="{token}" data-p="{p:.4f}">',
        f"<title>{state} → {target} ({escape(words['svg_next_' + token])}): {p:.1%}</title>",
        f'<path d="{path}" fill="none" stroke="{color}" stroke-width="{stroke:.2f}" stroke-opacity="0.8"/>',
        _arrowhead(tip, toward_tip, stroke, color),
        _text(label[0], label[1], f"{p:.0%}", fill=color, extra=halo),
        "</g>",
    ]


def render_transition_svg(
    state_probs: dict[str, float], *, title: str = "", unseen: Collection[str] = (), lang: str = "en"
) -> str:
    """Draw the Markov chain: one node per state, two arrows each (append 0 / append 1), thickness = probability.

    `state_probs` maps every state of one length to P(next token = 1); `unseen` states get a dashed outline.
    """
    states = sorted(state_probs)
    bits = len(states[0]) if states else 0
    if not bits or states != [format(i, f"0{bits}b") for i in range(2**bits)]:
        raise ValueError(f"state_probs must have every bit string of one length as keys; got {states}")
    centres = _layout(states)
    centre = (sum(x for x, _ in centres.values()) / len(states), sum(y for _, y in centres.values()) / len(states))
    words = TEXT[resolve_language(lang)]
    width, height = 740, 400
    parts = _open_svg("transition-graph", width, height, title, "State-transition graph")
    edges = []
    for state in states:
        for token in "01":
            target = state[1:] + token
            p = state_probs[state] if token == "1" else 1.0 - state_probs[state]
            edges.append((state, token, target, p, _edge_geometry(centres[state], centres[target], centre, 1 + 7 * p)))
    labels = spread_labels([geometry[3] for *_, geometry in edges])
    for (state, token, target, p, geometry), label in zip(edges, labels):
        parts += _edge_parts(state, token, target, p, geometry[:3], label, words)
    for state in states:
        x, y = centres[state]
        dashed = state in unseen
        outline = ' stroke-dasharray="4 3"' if dashed else ""
        parts += [
            f'<g class="node{" unseen" if dashed else ""}" data-state="{state}">',
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{NODE_RADIUS}" fill="{"#f1f5f9" if dashed else "white"}" '
            f'stroke="{INK}" stroke-width="2"{outline}/>',
            _text(x, y, state, size=14, extra=MONO),
            "</g>",
        ]
    keys = [(TOKEN_COLORS["1"], words["svg_next_1"], False), (TOKEN_COLORS["0"], words["svg_next_0"], False)]
    note = words["svg_thickness"] + ("; " + words["svg_unseen"] if unseen else "")
    parts.append(_legend(keys, x=20, y=height - 18, note=note))
    parts.append("</svg>")
    return "\n".join(parts)


def _legend(items: Sequence[tuple[str, str, bool]], *, x: float, y: float, note: str = "") -> str:
    """One row of (colour, label, dashed) keys, then an optional grey note."""
    out = ['<g class="legend">']
    for color, label, dashed in items:
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        out.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x + 22:.1f}" y2="{y}" stroke="{color}" stroke-width="3"{dash}/>')
        out.append(_text(x + 28, y, label, anchor="start"))
        x += 44 + sum(12 if ord(ch) > 0x2E80 else 6.5 for ch in label)
    if note:
        out.append(_text(x, y, note, fill=MUTED, anchor="start"))
    out.append("</g>")
    return "\n".join(out)


def _thin(values: Sequence[float], limit: int = 400) -> list[tuple[int, float]]:
    """Keep at most about `limit` points (always the last) so long runs stay small."""
    stride = max(1, math.ceil(len(values) / limit))
    kept = list(range(0, len(values), stride))
    if kept[-1] != len(values) - 1:
        kept.append(len(values) - 1)
    return [(i, values[i]) for i in kept]


def _panel_axes(name: str, label: str, top: float, bottom: float, ymax: float, left: float, right: float) -> str:
    """Axis lines, three y ticks and the rotated panel name."""
    out = [
        f'<g class="axes" data-panel="{name}">',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="{MUTED}"/>',
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{MUTED}"/>',
    ]
    for value in (0.0, ymax / 2, ymax):
        y = bottom - (bottom - top) * value / ymax
        out.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" stroke="{MUTED}"/>')
        out.append(_text(left - 7, y, f"{value:.2f}", size=11, fill=MUTED, anchor="end"))
    middle = (top + bottom) / 2
    out.append(_text(16, middle, label, extra=f'transform="rotate(-90 16 {middle})" {FONT}'))
    out.append("</g>")
    return "\n".join(out)


@dataclass(frozen=True)
class _Plot:
    """Where a value of a step lands in one of the stacked panels."""

    steps: int
    panels: dict[str, tuple[float, float, float]]  # name: (top, bottom, largest value)
    left: float = 58
    right: float = 624

    def x_of(self, i: int) -> float:
        return self.left + (self.right - self.left) * i / self.steps

    def y_of(self, value: float, panel: str) -> float:
        top, bottom, ymax = self.panels[panel]
        return bottom - (bottom - top) * value / ymax

    def series(self, name: str, values: Sequence[float], panel: str, color: str) -> str:
        points = " ".join(f"{self.x_of(i):.1f},{self.y_of(v, panel):.1f}" for i, v in _thin(values))
        return (
            f'<polyline class="series" data-series="{_attr(name)}" points="{points}" fill="none" '
            f'stroke="{color}" stroke-width="2"/>'
        )

    def level(self, name: str, value: float, panel: str, color: str) -> str:
        y = self.y_of(value, panel)
        return (
            f'<line class="target" data-series="{_attr(name)}" x1="{self.left}" y1="{y:.1f}" x2="{self.right}" '
            f'y2="{y:.1f}" stroke="{color}" stroke-width="1.5" stroke-dasharray="5 4"/>'
        )


def render_training_plot_svg(
    loss: Sequence[float],
    tracked: dict[str, Sequence[float]],
    *,
    loss_floor: float | None = None,
    targets: dict[str, float | None] | None = None,
    title: str = "",
    lang: str = "en",
) -> str:
    """Two stacked line plots over training steps: loss (with its floor) and tracked probabilities (with the data's)."""
    if not loss:
        raise ValueError("loss must have at least one value")
    words = TEXT[resolve_language(lang)]
    loss_top = max(max(loss), loss_floor or 0.0) * 1.1 or 1.0
    plot = _Plot(max(len(loss) - 1, 1), {"loss": (62.0, 162.0, loss_top), "probability": (212.0, 312.0, 1.0)})
    names = {"loss": words["svg_loss"], "probability": words["svg_probability"]}
    parts = _open_svg("training-plot", 640, 360, title, "Training curves")
    parts += [_panel_axes(name, names[name], *box, plot.left, plot.right) for name, box in plot.panels.items()]
    for i in sorted({0, plot.steps // 2, plot.steps}):
        parts.append(_text(plot.x_of(i), 326, str(i), size=11, fill=MUTED))
    parts.append(_text((plot.left + plot.right) / 2, 344, words["svg_step"]))

    parts.append(plot.series("loss", loss, "loss", INK))
    loss_keys = [(INK, words["svg_loss"], False)]
    if loss_floor is not None:
        parts.append(plot.level("loss floor", loss_floor, "loss", MUTED))
        loss_keys.append((MUTED, words["svg_loss_floor"], True))
    parts.append(_legend(loss_keys, x=plot.left + 10, y=46))

    prob_keys = []
    for (name, values), color in zip(tracked.items(), SERIES_COLORS):
        parts.append(plot.series(name, values, "probability", color))
        prob_keys.append((color, f"P({name})", False))
        target = (targets or {}).get(name)
        if target is not None:
            parts.append(plot.level(f"{name} data", target, "probability", color))
    parts.append(_legend(prob_keys, x=plot.left + 10, y=196, note=words["svg_data_dashed"] if targets else ""))
    parts.append("</svg>")
    return "\n".join(parts)
