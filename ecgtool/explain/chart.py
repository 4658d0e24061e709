"""The ECG as a clinician reads it, on paper, with a saliency map laid over it.

Paper conventions (as on every electrocardiograph's printout): 25 mm/s, 10 mm/mV,
a pink grid of 1 mm minor and 5 mm major lines, a 1 mV calibration pulse at the
start of each row (a per-record z-scored store is drawn at 2.5 mm per SD,
which gives its QRS complexes their usual printed size). A standard 12-lead record is laid out 3 × 4 — I, aVR, V1, V4 /
II, aVL, V2, V5 / III, aVF, V3, V6, 2.5 s each — above a full-length lead II
rhythm strip; any other lead set, or a record shorter than the 10 s that layout
needs (a beat store's windows), gets one full-length row per lead. A row holds
10 s; longer signals continue on further rows.

The figure size is chosen in millimetres and the grid is drawn in millimetre data
coordinates on an axes of exactly that size, so the printout is true to scale at
the saved dpi (``px per mm = dpi / 25.4``).

The map is shown as translucent colour behind the trace — colour and opacity both
grow with the normalised |saliency| — so the black trace and the grid stay
readable where the map is high, and low-saliency stretches look like plain paper.
A signed map (integrated gradients) keeps its sign: a diverging scale centred on
zero with symmetric limits, red where the samples raise the explained class's
score and blue where they lower it, opacity growing with the magnitude.

The per-lead view (``per_lead``) gives every lead a full-length row with its own
band, and beside each row a bar with the lead's share of the record's total
|attribution| and its rank (coloured by the sign of the lead's net attribution
when the map is signed). A ``window`` (the sliding window that decided a crop-trained
model's prediction) is marked by a bar along the top of the strips it covers.

Rendering uses matplotlib's object-oriented API with the Agg canvas (no pyplot, no
global backend switch), imported only when a chart is drawn.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np

from ecgtool.explain.explanation import lead_importance, lead_shares

MM_PER_INCH = 25.4
SPEED_MM_S = 25.0  # paper speed
GAIN_MM_MV = 10.0  # amplitude scale
# A per-record z-scored ECG has its QRS complexes 4-8 SD tall; 2.5 mm per SD draws them about as
# tall as a 1-2 mV QRS at 10 mm/mV, so the traces stay within their rows as on a real printout.
GAIN_MM_SD = 2.5
ROW_MM = 40.0  # height of one row of paper (baselines sit on major lines)
CAL_MM = 10.0  # the calibration pulse's column at the start of each row
ROW_SECONDS = 10.0  # one row of paper: 250 mm
MARGIN_MM = {"left": 8.0, "right": 34.0, "top": 24.0, "bottom": 11.0}
MIN_WIDTH_MM = 210.0  # room for the title on short records
STANDARD_ROWS = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM_LEAD = "II"
GRID_MINOR, GRID_MAJOR = "#f7c6cc", "#e88e98"
OVERLAY_CMAP = "YlGnBu"
SIGNED_CMAP = "RdBu_r"  # diverging: blue < 0 < red, white at 0 (ColorBrewer RdBu, reversed so that red = for the class)
WINDOW_COLOUR = "#e66101"  # the deciding window's mark: orange, apart from both overlay scales
RANK_MM = 40.0  # the per-lead importance column to the right of the grid
OVERLAY_ALPHA = 0.55  # opacity at the top of the scale
OVERLAY_GAMMA = 1.5  # opacity = ALPHA * value**GAMMA: low values stay close to plain paper
DISPLAY_PERCENTILE = 99.5  # the map is scaled so this percentile of |saliency| is 1: a few spikes don't wash out the rest


@dataclass
class Strip:
    """One stretch of one lead on the paper: samples ``[start, stop)`` at ``x0`` mm on row ``row``."""

    lead: int
    label: str
    start: int
    stop: int
    row: int
    x0: float


def _wrapped(lead: int, label: str, n: int, per_row: int, first_row: int) -> list[Strip]:
    """A whole lead on as many 10-s rows as it needs (rows after the first name their time span)."""
    out = []
    for k, start in enumerate(range(0, n, per_row)):
        name = label if n <= per_row else f"{label}  {start // per_row * ROW_SECONDS:g}–{min(start + per_row, n) / per_row * ROW_SECONDS:g} s"
        out.append(Strip(lead, name, start, min(start + per_row, n), first_row + k, CAL_MM))
    return out


def layout(leads: list[str], n_samples: int, fs: float, per_lead: bool = False) -> tuple[list[Strip], int, float]:
    """The strips of a chart, its number of rows and the seconds a row spans (``per_lead``: every lead on its own rows)."""
    per_row = int(round(ROW_SECONDS * fs))
    page_n = min(n_samples, per_row)
    index = {name.lower(): i for i, name in enumerate(leads)}
    strips: list[Strip] = []
    if not per_lead and n_samples >= per_row and all(name.lower() in index for row in STANDARD_ROWS for name in row):
        col = page_n // 4
        for r, row in enumerate(STANDARD_ROWS):
            for c, name in enumerate(row):
                strips.append(Strip(index[name.lower()], name, c * col, (c + 1) * col, r, CAL_MM + c * col / fs * SPEED_MM_S))
        strips += _wrapped(index[RHYTHM_LEAD.lower()], RHYTHM_LEAD, n_samples, per_row, len(STANDARD_ROWS))
    else:
        for i, name in enumerate(leads):
            strips += _wrapped(i, name, n_samples, per_row, strips[-1].row + 1 if strips else 0)
    return strips, strips[-1].row + 1, page_n / fs


def page_size_mm(leads: list[str], n_samples: int, fs: float, per_lead: bool = False) -> tuple[float, float]:
    """``(width, height)`` of the chart in mm (``per_lead``: the per-lead view, with its importance column)."""
    _, rows, seconds = layout(leads, n_samples, fs, per_lead)
    grid_w, grid_h = _grid_size(rows, seconds)
    m = MARGIN_MM
    right = m["right"] + (RANK_MM if per_lead else 0.0)
    return max(m["left"] + grid_w + right, MIN_WIDTH_MM), m["top"] + grid_h + m["bottom"]


def _grid_size(rows: int, seconds: float) -> tuple[float, float]:
    width = CAL_MM + seconds * SPEED_MM_S
    return float(np.ceil(width / 5.0) * 5.0), rows * ROW_MM


def display_map(saliency: np.ndarray, fs: float, smooth_s: float = 0.0, signed: bool = False) -> tuple[np.ndarray, float]:
    """|saliency| scaled to [0, 1] (``signed``: the signed map to [-1, 1], symmetric about 0) by the record's
    ``DISPLAY_PERCENTILE`` of |saliency|, optionally smoothed over ``smooth_s``.

    Per-sample gradient maps flicker from one sample to the next; a short moving
    average (tens of ms) shows which waves they point at. Returns the map and the scale.
    """
    d = np.asarray(saliency, dtype=np.float64)
    d = d if signed else np.abs(d)
    width = int(round(smooth_s * fs))
    if width > 1:
        kernel = np.ones(width) / width
        d = np.stack([np.convolve(row, kernel, mode="same") for row in d])
    scale = float(np.percentile(np.abs(d), DISPLAY_PERCENTILE)) if d.size else 0.0
    if not np.isfinite(scale) or scale <= 0:
        return np.zeros_like(d), 0.0
    return np.clip(d / scale, -1.0 if signed else 0.0, 1.0), scale


def _overlay_colours(values: np.ndarray, signed: bool = False):
    """RGBA for map values in [0, 1] (``signed``: [-1, 1], 0 in the middle of the diverging scale):
    the colormap's colour, opacity growing with the magnitude."""
    from matplotlib import colormaps

    values = np.asarray(values)
    # signed: the middle 80 % of the diverging map — its darkest ends turn muddy once blended into the paper
    rgba = colormaps[SIGNED_CMAP](0.5 + 0.4 * values) if signed else colormaps[OVERLAY_CMAP](values)
    rgba[..., 3] = OVERLAY_ALPHA * np.abs(values) ** OVERLAY_GAMMA
    return rgba


def _colorbar_cmap(signed: bool = False):
    """The overlay as it looks on white paper (colour blended by its opacity), for the colour bar."""
    from matplotlib.colors import ListedColormap

    rgba = _overlay_colours(np.linspace(-1.0 if signed else 0.0, 1.0, 256), signed)
    alpha = rgba[:, 3:4]
    return ListedColormap(rgba[:, :3] * alpha + (1.0 - alpha))


def _grid(ax, width: float, height: float) -> None:
    from matplotlib.collections import LineCollection

    for step, colour, lw in ((1.0, GRID_MINOR, 0.3), (5.0, GRID_MAJOR, 0.6)):
        xs = np.arange(0.0, width + 1e-6, step)
        ys = np.arange(0.0, height + 1e-6, step)
        if step == 1.0:  # minor lines only where no major line is drawn over them
            xs, ys = xs[np.round(xs) % 5 != 0], ys[np.round(ys) % 5 != 0]
        segments = [((x, 0.0), (x, height)) for x in xs] + [((0.0, y), (width, y)) for y in ys]
        ax.add_collection(LineCollection(segments, colors=colour, linewidths=lw, zorder=2))  # over the tint


def figure(signal: np.ndarray, leads: list[str], fs: float, saliency: np.ndarray | None, title: str, subtitle: str,
           *, units: str = "mV", dpi: float = 150.0, smooth_s: float = 0.0, colorbar_label: str = "relative |saliency|",
           footer: str = "", signed: bool = False, per_lead: bool = False, window: tuple[int, int] | None = None):
    """The chart as a matplotlib ``Figure`` (Agg canvas) and the axes in mm; see :func:`save_chart`.

    ``signed``: draw the map with its sign (diverging scale); ``per_lead``: the per-lead view (one row per
    lead, and the leads' shares of |saliency| ranked beside them); ``window``: samples ``[start, stop)``
    to mark as the window that decided the prediction.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    signal = np.asarray(signal, dtype=np.float64)
    n = signal.shape[-1]
    per_lead = per_lead and saliency is not None
    strips, rows, seconds = layout(leads, n, fs, per_lead)
    grid_w, grid_h = _grid_size(rows, seconds)
    page_w, page_h = page_size_mm(leads, n, fs, per_lead)
    m = MARGIN_MM
    fig = Figure(figsize=(page_w / MM_PER_INCH, page_h / MM_PER_INCH), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((m["left"] / page_w, m["bottom"] / page_h, grid_w / page_w, grid_h / page_h))
    ax.set_xlim(0.0, grid_w)
    ax.set_ylim(0.0, grid_h)
    ax.set_axis_off()
    _grid(ax, grid_w, grid_h)

    shown = display_map(saliency, fs, smooth_s, signed)[0] if saliency is not None else None
    gain = GAIN_MM_MV if units == "mV" else GAIN_MM_SD
    marked = False
    for s in strips:
        base = grid_h - (s.row + 0.5) * ROW_MM
        t = np.arange(s.start, s.stop) / fs
        x = s.x0 + (t - s.start / fs) * SPEED_MM_S
        if shown is not None:
            x1 = s.x0 + (s.stop - s.start) / fs * SPEED_MM_S
            ax.imshow(_overlay_colours(shown[s.lead, s.start : s.stop], signed)[None],
                      extent=(s.x0, x1, base - ROW_MM / 2, base + ROW_MM / 2), aspect="auto", interpolation="nearest", zorder=1)
        ax.plot(x, base + gain * signal[s.lead, s.start : s.stop], color="black", lw=0.9, zorder=3, solid_joinstyle="round")
        ax.text(s.x0 + 1.2, base + ROW_MM / 2 - 2.0, s.label, fontsize=9, fontweight="bold", va="top", ha="left", zorder=4,
                bbox={"boxstyle": "square,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
        if s.x0 > CAL_MM:  # the lead change mark of a 3 × 4 printout
            ax.plot([s.x0, s.x0], [base - 3.0, base + 3.0], color="black", lw=1.0, zorder=3)
        if window is not None and max(s.start, window[0]) < min(s.stop, window[1]):
            a, b = (s.x0 + (v - s.start) / fs * SPEED_MM_S for v in (max(s.start, window[0]), min(s.stop, window[1])))
            top = base + ROW_MM / 2 - 0.8
            ax.plot([a, b], [top, top], color=WINDOW_COLOUR, lw=3.0, solid_capstyle="butt", zorder=5)
            if not marked:
                ax.text(b - 0.5, top - 1.2, "deciding window", color=WINDOW_COLOUR, fontsize=7, fontweight="bold",
                        ha="right", va="top", zorder=5)
                marked = True
    for r in range(rows):  # 1 mV (or 1 unit) calibration pulse, 0.2 s wide, at the start of every row
        base = grid_h - (r + 0.5) * ROW_MM
        ax.plot([1.5, 2.5, 2.5, 7.5, 7.5, 8.5], base + np.array([0, 0, 1, 1, 0, 0]) * gain, color="black", lw=1.0, zorder=3)
    if per_lead:
        _lead_ranking(ax, strips, np.asarray(saliency, dtype=np.float64), grid_w, grid_h, signed)

    chars = int((page_w - 12) / 2.1)  # ~2.1 mm per character at 10 pt
    fig.text(m["left"] / page_w, 1 - 5 / page_h, "\n".join(textwrap.wrap(title, chars)[:2]), fontsize=10.5, fontweight="bold", va="top")
    fig.text(m["left"] / page_w, 1 - 15 / page_h, "\n".join(textwrap.wrap(subtitle, int(chars * 1.15))[:1]), fontsize=9, va="top")
    scale = f"{SPEED_MM_S:g} mm/s   {GAIN_MM_MV:g} mm/mV" if units == "mV" else f"{SPEED_MM_S:g} mm/s   {gain:g} mm per {units}"
    footer_lines = textwrap.wrap(f"{scale}   fs {fs:g} Hz   grid 1 mm / 5 mm   {footer}".strip(), int(chars * 1.3))[:2]
    fig.text(m["left"] / page_w, 1.5 / page_h, "\n".join(footer_lines), fontsize=8, va="bottom")

    if shown is not None:
        left = m["left"] + grid_w + (RANK_MM if per_lead else 0.0) + 6
        cax = fig.add_axes((left / page_w, (m["bottom"] + grid_h * 0.25) / page_h, 4 / page_w, grid_h * 0.5 / page_h))
        lo = -1.0 if signed else 0.0
        bar = ColorbarBase(cax, cmap=_colorbar_cmap(signed), norm=Normalize(lo, 1.0), ticks=[lo, (lo + 1) / 2, 1])
        bar.set_label(colorbar_label, fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return fig, ax


def _lead_ranking(ax, strips: list[Strip], saliency: np.ndarray, grid_w: float, grid_h: float, signed: bool) -> None:
    """Beside each lead's first row: a bar of its share of the record's |attribution| and its rank."""
    share = lead_shares(lead_importance(saliency))
    net = saliency.sum(axis=-1)
    rank = np.empty(len(share), dtype=np.int64)
    rank[np.argsort(-share, kind="stable")] = np.arange(1, len(share) + 1)
    longest = RANK_MM - 12.0
    x0 = grid_w + 3.0
    heading = "share of |attribution|" + ("\nred: net for the class,\nblue: net against it" if signed else "")
    ax.text(x0, grid_h + 1.5, heading, fontsize=7, va="bottom", ha="left", clip_on=False)
    seen: set[int] = set()
    for s in strips:
        if s.lead in seen:
            continue
        seen.add(s.lead)
        base = grid_h - (s.row + 0.5) * ROW_MM
        colour = ("#b2182b" if net[s.lead] > 0 else "#2166ac") if signed else "#41b6c4"
        length = longest * share[s.lead] / max(share.max(), 1e-12)
        ax.add_patch(_rectangle((x0, base - 3.0), length, 6.0, colour))
        ax.text(x0, base + 4.0, f"#{rank[s.lead]}  {share[s.lead]:.0%}", fontsize=7.5, va="bottom", ha="left", clip_on=False,
                fontweight="bold" if rank[s.lead] <= 3 else "normal")


def _rectangle(xy, width, height, colour):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, width, height, facecolor=colour, edgecolor="none", clip_on=False, zorder=4)


def save_chart(path, signal: np.ndarray, leads: list[str], fs: float, saliency: np.ndarray | None, title: str, subtitle: str,
               *, dpi: float = 150.0, **kwargs) -> tuple[int, int]:
    """Write the chart as a PNG at ``dpi`` (true scale: 1 mm = dpi / 25.4 px); returns its ``(width, height)`` in px."""
    from PIL import Image  # matplotlib's own image dependency

    fig, _ = figure(signal, leads, fs, saliency, title, subtitle, dpi=dpi, **kwargs)
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
    # A chart is a few flat colours (paper, grid, ink, the overlay's ramp): a 256-colour palette
    # keeps it visually identical at a third of the size of a true-colour PNG.
    image = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(path, format="PNG", optimize=True, dpi=(dpi, dpi))
    return image.size
