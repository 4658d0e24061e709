"""Report figures: ROC and precision–recall curves, calibration, confusion tables, thresholds.

Data conventions are those of :mod:`ecgtool.eval.metrics`: ``y`` is the label
matrix ``[N, K]`` (multi-hot, or one-hot for multi-class), ``p`` the predicted
probabilities ``[N, K]`` and decisions are per-class thresholds (multi-label;
0.5 where none are given) or the argmax (multi-class).

Files written by :func:`write_report_plots`:

``roc.png``, ``pr.png``
    One panel per class (one-vs-rest for multi-class) with AUC or average
    precision in its title, the chance line (ROC diagonal; PR prevalence) and
    the operating point of the decision rule: the class's threshold
    (multi-label), or the one-vs-rest result of the argmax (multi-class; that
    is no threshold on the class's own probability, so the point may lie off
    the curve). The first panel summarises all classes: every class curve
    faintly, the micro-average (all (record, class) pairs pooled) in bold, and
    the macro average over the classes that have one.
``reliability.png``
    Calibration in 10 equal-width bins with a histogram of counts below and the
    expected calibration error in the title. Multi-label: every (record, class)
    probability is one prediction. Multi-class: top-class confidence against
    whether the argmax is right.
``confusion.png``
    Multi-class: the K×K matrix, true on rows, predicted on columns, colour the
    row-normalised fraction, counts written in the cells. Multi-label: one 2×2
    table (TN/FP/FN/TP) per class, plus one pooled over all labels.
``thresholds.png`` (multi-label only)
    F1, sensitivity and specificity of each class against the threshold, the
    chosen threshold marked.

Many classes: panels have a fixed size (about 2.5 × 2.5 in) and a figure holds
at most 24 of them (6 columns × 4 rows, the summary panel included); further
classes go to ``roc-2.png``, ``roc-3.png``, … (likewise ``pr``, multi-label
``confusion`` and ``thresholds``), so PTB-XL's 71 classes make 3 pages. The
multi-class matrix stays one figure whose cells shrink (to ≥ 0.16 in) as K
grows. Files of an earlier call with more classes are not removed.

A class with only one label value (no positives, or no negatives) has no ROC or
PR curve; its panel says so. matplotlib is imported only when plotting, and
only its object-oriented API (``Figure`` + Agg canvas) is used, so no pyplot
state is touched and no figure is left open. PNGs carry no software/time
metadata, so the same input gives the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ecgtool.eval.metrics import per_class_auc, predict_labels

DPI = 130
PER_FILE = 24          # panels per small-multiples figure
MAX_COLS = 6
PANEL_W, PANEL_H = 2.55, 2.45   # inches per panel
CURVE, POINT, CHANCE, FAINT = "#1f77b4", "#d62728", "#8c8c8c", "#9ecae1"
STYLE = {
    "font.size": 8,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 8,
    "figure.titlesize": 12,
    "figure.labelsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.6,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
}


# ---------------------------------------------------------------- calibration

def calibration_bins(y_true_flat, p_flat, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin on [0, 1]: (count, mean predicted probability, observed frequency).

    A probability on an inner edge goes to the upper bin and 1.0 to the last one,
    as in ``sklearn.calibration.calibration_curve``. Empty bins have NaN means.
    """
    y = np.asarray(y_true_flat, dtype=float).ravel()
    p = np.asarray(p_flat, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true_flat and p_flat differ in length: {y.size} vs {p.size}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.searchsorted(edges[1:-1], p, side="right")
    count = np.bincount(idx, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(idx, weights=p, minlength=bins) / count
        freq = np.bincount(idx, weights=y, minlength=bins) / count
    return count.astype(np.int64), mean_p, freq


def expected_calibration_error(y_true_flat, p_flat, bins: int = 10) -> float:
    """ECE: sum over equal-width bins of (bin share of predictions) × |observed frequency − mean probability|.

    ``y_true_flat`` holds 0/1 outcomes (for multi-class: whether the argmax is
    right) and ``p_flat`` the probabilities (top-class confidence). NaN when empty.
    """
    count, mean_p, freq = calibration_bins(y_true_flat, p_flat, bins)
    total = count.sum()
    if total == 0:
        return float("nan")
    used = count > 0
    return float(np.sum(count[used] * np.abs(freq[used] - mean_p[used])) / total)


# ---------------------------------------------------------------- helpers

def _short(name: str, n: int = 24) -> str:
    name = str(name)
    return name if len(name) <= n else name[: n - 1] + "…"


def _fmt(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _degenerate(yk: np.ndarray) -> str | None:
    """Why a class has no ROC/PR curve, or None if it has one."""
    pos = int(yk.sum())
    if pos == 0:
        return "no positives"
    if pos == len(yk):
        return "no negatives\n(all positive)"
    return None


def _new_figure(figsize, constrained: bool = True):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


class _Grid:
    """Fixed-size panels (≤ MAX_COLS columns) laid out in inches: header (title, legend), panels, axis labels.

    Placing everything by hand keeps every panel the same size whatever the
    number of classes, and keeps the figure legend clear of the title.
    """

    RIGHT = 0.2
    PAD_L, PAD_R, PAD_T, PAD_B = 0.42, 0.13, 0.45, 0.3   # around each panel's axes (ticks, two-line title)

    def __init__(self, n_panels: int, heading: str, legend_handles: list | None = None, axis_labels: bool = True):
        self.LEFT, self.BOTTOM = (0.45, 0.45) if axis_labels else (0.1, 0.1)   # room for the shared axis labels
        self.cols = min(MAX_COLS, max(n_panels, 1))
        self.rows = math.ceil(max(n_panels, 1) / self.cols)
        width = max(self.LEFT + self.cols * PANEL_W + self.RIGHT, 8.4 if legend_handles else 7.0)  # room for legend
        heading, size = _wrap_title(heading, width)
        title_h = 0.48 + (0.2 if "\n" in heading else 0.0)
        self.header = title_h + (0.3 if legend_handles else 0.0)
        height = self.header + self.rows * PANEL_H + self.BOTTOM
        self.w, self.h = width, height
        self.fig = _new_figure((width, height), constrained=False)
        x0 = (width - self.cols * PANEL_W - self.LEFT - self.RIGHT) / 2 + self.LEFT   # centre narrow grids
        self.x0 = x0
        self.axes = []
        for i in range(n_panels):
            r, c = divmod(i, self.cols)
            left = x0 + c * PANEL_W + self.PAD_L
            top = height - self.header - r * PANEL_H - self.PAD_T
            aw, ah = PANEL_W - self.PAD_L - self.PAD_R, PANEL_H - self.PAD_T - self.PAD_B
            self.axes.append(self.fig.add_axes((left / width, (top - ah) / height, aw / width, ah / height)))
        title_y = (title_h - 0.2) / 2 + (0.1 if "\n" in heading else 0.0)   # inches from the top
        self.fig.text(0.5, 1 - title_y / height, heading, ha="center", va="center", fontsize=size,
                      fontweight="bold", linespacing=1.1)
        if legend_handles:
            self.fig.legend(handles=legend_handles, loc="center", bbox_to_anchor=(0.5, 1 - (title_h + 0.12) / height),
                            ncols=len(legend_handles), frameon=False, handlelength=2.2, columnspacing=1.8)

    def labels(self, xlabel: str, ylabel: str) -> None:
        grid_mid_x = (self.x0 + self.cols * PANEL_W / 2 + self.PAD_L / 2) / self.w
        grid_mid_y = (self.BOTTOM + self.rows * PANEL_H / 2 + (self.PAD_B - self.PAD_T) / 2) / self.h
        self.fig.text(grid_mid_x, 0.2 / self.h, xlabel, ha="center", va="center", fontsize=9.5)
        self.fig.text((self.x0 - self.LEFT + 0.2) / self.w, grid_mid_y, ylabel, ha="center", va="center",
                      rotation=90, fontsize=9.5)


def _wrap_title(text: str, width_in: float) -> tuple[str, float]:
    """A figure title that fits the figure's width: wrapped onto two lines, and smaller, where it is long."""
    import textwrap

    per_line = int(width_in / 0.115)          # ~ characters per inch at 12 pt bold
    if len(text) <= per_line:
        return text, 12.0
    return "\n".join(textwrap.wrap(text, width=int(per_line * 1.15), max_lines=2, placeholder=" …")), 10.5


def _save(fig, path: Path) -> Path:
    """Write the PNG. The figure belongs to no pyplot manager, so dropping it frees it: nothing stays open."""
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


def _page_name(stem: str, page: int) -> str:
    return f"{stem}.png" if page == 0 else f"{stem}-{page + 1}.png"


def _heading(what: str, title: str, page: int, pages: int, ids: list[int], k: int) -> str:
    head = f"{what} — {title}" if title else what
    if pages > 1:
        span = f"classes {ids[0] + 1}–{ids[-1] + 1} of {k}, " if ids else ""
        head += f"   ({span}page {page + 1}/{pages})"
    return head


def _paginate(items: list, per_file: int = PER_FILE) -> list[list]:
    return [items[i: i + per_file] for i in range(0, len(items), per_file)] or [[]]


def _unit_axes(ax, diagonal: bool = False) -> None:
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks([0, 0.5, 1])
    ax.set_yticks([0, 0.5, 1])
    ax.set_xticklabels(["0", "0.5", "1"])
    ax.set_yticklabels(["0", "0.5", "1"])
    if diagonal:
        ax.plot([0, 1], [0, 1], ls="--", lw=0.9, color=CHANCE, zorder=1)


def _no_curve(ax, why: str) -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=9, color="#555555", transform=ax.transAxes,
            bbox={"boxstyle": "round,pad=0.4", "fc": "#f4f4f4", "ec": "#cccccc"})


def _panel_title(ax, name: str, detail: str) -> None:
    ax.set_title(f"{_short(name)}\n{detail}", loc="center", pad=4)


# ---------------------------------------------------------------- ROC / PR

def _curve_figures(out_dir: Path, kind: str, y, p, yhat, classes, multi_label, title) -> list[Path]:
    from sklearn import metrics as skm

    k = len(classes)
    n = len(y)
    rule = "threshold" if multi_label else "argmax"
    if kind == "roc":
        score = per_class_auc(y, p)
    else:
        score = np.full(k, np.nan)
        for j in range(k):
            if _degenerate(y[:, j]) is None:
                score[j] = skm.average_precision_score(y[:, j], p[:, j])
    label = "AUC" if kind == "roc" else "AP"

    def curve(yk, pk):
        if kind == "roc":
            fpr, tpr, _ = skm.roc_curve(yk, pk)
            return fpr, tpr
        precision, recall, _ = skm.precision_recall_curve(yk, pk)
        return recall, precision

    def operating_point(yk, dk):
        tp = int(np.sum((dk == 1) & (yk == 1)))
        fp = int(np.sum((dk == 1) & (yk == 0)))
        pos = int(yk.sum())
        if kind == "roc":
            return fp / (n - pos), tp / pos
        return (tp / pos, tp / (tp + fp)) if tp + fp else None

    def decorate(ax):
        _unit_axes(ax, diagonal=kind == "roc")

    # summary panel: every class faintly, micro-average in bold
    def summary(ax):
        decorate(ax)
        yf, pf = y.ravel(), p.ravel()
        for j in range(k):
            if _degenerate(y[:, j]) is None:
                xs, ys = curve(y[:, j], p[:, j])
                ax.plot(xs, ys, color=FAINT, lw=0.6, alpha=0.7, zorder=2,
                        drawstyle="steps-post" if kind == "pr" else "default")
        ok = np.isfinite(score)
        macro = float(np.mean(score[ok])) if ok.any() else float("nan")
        if _degenerate(yf) is None:
            xs, ys = curve(yf, pf)
            ax.plot(xs, ys, color=CURVE, lw=1.8, zorder=3, drawstyle="steps-post" if kind == "pr" else "default")
            micro = skm.roc_auc_score(yf, pf) if kind == "roc" else skm.average_precision_score(yf, pf)
            if kind == "pr":
                ax.axhline(yf.mean(), ls="--", lw=0.9, color=CHANCE, zorder=1)
        else:
            micro = float("nan")
        cover = "" if ok.all() else f" ({int(ok.sum())}/{k})"
        ax.set_title(f"All classes\nmacro {label} {_fmt(macro)}{cover} · micro {_fmt(micro)}", fontweight="bold", pad=4)

    def panel(ax, j):
        decorate(ax)
        yk, pk = y[:, j], p[:, j]
        pos = int(yk.sum())
        why = _degenerate(yk)
        if why is not None:
            _panel_title(ax, classes[j], f"{label} n/a · n+={pos}")
            _no_curve(ax, why)
            return
        xs, ys = curve(yk, pk)
        if kind == "pr":
            ax.axhline(pos / n, ls="--", lw=0.9, color=CHANCE, zorder=1)
            ax.plot(xs, ys, color=CURVE, lw=1.4, zorder=2, drawstyle="steps-post")
        else:
            ax.plot(xs, ys, color=CURVE, lw=1.4, zorder=2)
        op = operating_point(yk, yhat[:, j])
        if op is not None:
            ax.plot(*op, "o", ms=5, color=POINT, mec="white", mew=0.8, zorder=4)
        _panel_title(ax, classes[j], f"{label} {_fmt(score[j])} · n+={pos}")

    items = ["summary"] + list(range(k))
    pages = _paginate(items)
    paths = []
    for page, chunk in enumerate(pages):
        ids = [i for i in chunk if i != "summary"]
        what = "ROC curves (one-vs-rest)" if kind == "roc" and not multi_label else \
            "ROC curves" if kind == "roc" else "Precision–recall curves"
        g = _Grid(len(chunk), _heading(what, title, page, len(pages), ids, k),
                  _legend_handles(kind, rule, summary="summary" in chunk))
        for ax, item in zip(g.axes, chunk):
            summary(ax) if item == "summary" else panel(ax, item)
        if kind == "roc":
            g.labels("False positive rate (1 − specificity)", "True positive rate (sensitivity)")
        else:
            g.labels("Recall (sensitivity)", "Precision (PPV)")
        paths.append(_save(g.fig, out_dir / _page_name(kind, page)))
    return paths


def _legend_handles(kind: str, rule: str, summary: bool) -> list:
    from matplotlib.lines import Line2D

    chance = "chance (diagonal)" if kind == "roc" else "prevalence (chance)"
    handles = [Line2D([], [], color=CURVE, lw=1.6, label="class curve" + (" / micro-average" if summary else "")),
               *([Line2D([], [], color=FAINT, lw=1.2, label="each class (summary panel)")] if summary else []),
               Line2D([], [], color=CHANCE, lw=0.9, ls="--", label=chance),
               Line2D([], [], ls="", marker="o", ms=5, color=POINT, mec="white", label=f"operating point ({rule})")]
    return handles


# ---------------------------------------------------------------- reliability

def _reliability(out_dir: Path, y, p, multi_label: bool, title: str) -> Path:
    if multi_label:
        outcome, prob = y.ravel().astype(float), p.ravel().astype(float)
        xlabel, ylabel = "Mean predicted probability", "Observed frequency of positives"
        sub = f"multi-label, pooled: each of {outcome.size:,} (record, class) probabilities is one prediction"
    else:
        outcome = (p.argmax(1) == y.argmax(1)).astype(float)
        prob = p.max(1).astype(float)
        xlabel, ylabel = "Confidence (top-class probability)", "Accuracy"
        sub = f"multi-class: top-class confidence of {outcome.size:,} records vs accuracy"
    bins = 10
    count, mean_p, freq = calibration_bins(outcome, prob, bins)
    ece = expected_calibration_error(outcome, prob, bins)
    edges = np.linspace(0, 1, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    used = count > 0

    fig = _new_figure((6.2, 6.6))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.1])
    head, size = _wrap_title("Reliability diagram" + (f" — {title}" if title else ""), 6.2)
    fig.suptitle(f"{head}\nECE = {_fmt(ece)} (10 equal-width bins)", fontweight="bold", fontsize=size)
    top.set_title(sub, fontsize=8, color="#444444")
    top.bar(centres[used], freq[used], width=1 / bins, color=FAINT, edgecolor="white", lw=0.8, zorder=2,
            label="observed frequency per bin")
    top.plot([0, 1], [0, 1], ls="--", lw=1, color="#555555", zorder=4, label="perfect calibration")
    top.plot(mean_p[used], freq[used], "o-", color=CURVE, lw=1.5, ms=4.5, zorder=3,
             label="observed vs mean predicted")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel(ylabel)
    top.legend(loc="upper left", frameon=False)

    bottom.bar(centres, count, width=1 / bins, color="#6baed6", edgecolor="white", lw=0.8, zorder=2)
    nz = count[used]
    if nz.size and nz.max() / max(nz.min(), 1) > 50:
        bottom.set_yscale("log")
        bottom.set_ylim(bottom=max(nz.min() / 3, 0.5))
        bottom.set_ylabel("Count (log)")
    else:
        bottom.set_ylabel("Count")
    bottom.set_xlabel(xlabel)
    bottom.set_xticks(edges)
    bottom.set_xticklabels([f"{e:.1f}" for e in edges])
    return _save(fig, out_dir / "reliability.png")


# ---------------------------------------------------------------- confusion

def _confusion_multiclass(out_dir: Path, y, p, classes, title: str) -> Path:
    from sklearn import metrics as skm

    k = len(classes)
    cm = skm.confusion_matrix(y.argmax(1), p.argmax(1), labels=list(range(k)))
    rows = cm.sum(1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    cell = min(0.62, 16.0 / k)
    name_len = min(22, max(len(str(c)) for c in classes))
    char_in = 0.085 * min(1.0, cell / 0.45)             # tick-label character width, font scaled with the cells
    count_len = len(f" (n={int(rows.max())})")
    side = k * cell
    width = side + char_in * (name_len + count_len) + 0.5 + 1.3     # y tick labels, y label, colour bar
    height = side + char_in * name_len * (0.75 if k <= 12 else 1.0) + 0.5 + 0.9   # x tick labels, x label, title
    fig = _new_figure((max(width, 5.5), max(height, 4.5)))
    ax = fig.subplots()
    ax.grid(False)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fs = max(4.5, min(9.0, cell * 15))
    both = k <= 12
    for i in range(k):
        for j in range(k):
            txt = f"{cm[i, j]}\n{frac[i, j]:.0%}" if both and rows[i, 0] else f"{cm[i, j]}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=fs, linespacing=1.1,
                    color="white" if frac[i, j] > 0.55 else "#222222")
    names = [_short(c, 22) for c in classes]
    tfs = max(5.0, min(8.5, cell * 14))
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(names, rotation=45 if k <= 12 else 90, ha="right" if k <= 12 else "center",
                       rotation_mode="anchor" if k <= 12 else "default", fontsize=tfs)
    ax.set_yticklabels([f"{nm} (n={r})" for nm, r in zip(names, rows[:, 0])], fontsize=tfs)
    ax.set_xlabel("Predicted class (argmax)")
    ax.set_ylabel("True class")
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_xticks(np.arange(-0.5, k, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, k, 1), minor=True)
    ax.grid(which="minor", color="white", lw=1)
    ax.tick_params(which="minor", length=0)
    cb = fig.colorbar(im, ax=ax, shrink=0.8, fraction=0.05, pad=0.02)
    cb.set_label("Fraction of true class (row-normalised)")
    acc = float(np.trace(cm) / max(cm.sum(), 1))
    head, size = _wrap_title("Confusion matrix" + (f" — {title}" if title else ""), fig.get_figwidth())
    fig.suptitle(f"{head}\naccuracy {acc:.3f} · {int(cm.sum()):,} records", fontweight="bold", fontsize=size)
    return _save(fig, out_dir / "confusion.png")


def _table(ax, tn: int, fp: int, fn: int, tp: int) -> None:
    m = np.array([[tn, fp], [fn, tp]])
    rows = m.sum(1, keepdims=True)
    frac = np.divide(m, rows, out=np.zeros(m.shape, dtype=float), where=rows > 0)
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ax.grid(False)
    for (i, j), name in np.ndenumerate(np.array([["TN", "FP"], ["FN", "TP"]])):
        ax.text(j, i, f"{name}\n{m[i, j]:,}", ha="center", va="center", fontsize=8.5, linespacing=1.2,
                color="white" if frac[i, j] > 0.55 else "#222222")
    ax.set_xticks([0, 1])
    ax.set_yticks([0, 1])
    ax.set_xticklabels(["pred −", "pred +"])
    ax.set_yticklabels(["true −", "true +"])
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)


def _confusion_multilabel(out_dir: Path, y, yhat, classes, thr, title: str) -> list[Path]:
    k = len(classes)

    def counts(yk, dk):
        return (int(np.sum((yk == 0) & (dk == 0))), int(np.sum((yk == 0) & (dk == 1))),
                int(np.sum((yk == 1) & (dk == 0))), int(np.sum((yk == 1) & (dk == 1))))

    pages = _paginate(["pooled"] + list(range(k)))
    paths = []
    for page, chunk in enumerate(pages):
        ids = [i for i in chunk if i != "pooled"]
        g = _Grid(len(chunk), _heading("Confusion tables per class (colour: fraction of the true row)", title, page,
                                       len(pages), ids, k), axis_labels=False)
        for ax, item in zip(g.axes, chunk):
            if item == "pooled":
                tn, fp, fn, tp = counts(y.ravel(), yhat.ravel())
                _table(ax, tn, fp, fn, tp)
                ax.set_title("All labels (pooled)\n" + _sens_spec(tn, fp, fn, tp), fontweight="bold", pad=4)
            else:
                tn, fp, fn, tp = counts(y[:, item], yhat[:, item])
                _table(ax, tn, fp, fn, tp)
                _panel_title(ax, classes[item], f"t={thr[item]:.3g} · " + _sens_spec(tn, fp, fn, tp))
        paths.append(_save(g.fig, out_dir / _page_name("confusion", page)))
    return paths


def _sens_spec(tn, fp, fn, tp) -> str:
    se = f"{tp / (tp + fn):.2f}" if tp + fn else "n/a"
    sp = f"{tn / (tn + fp):.2f}" if tn + fp else "n/a"
    return f"Se {se} · Sp {sp}"


# ---------------------------------------------------------------- thresholds

def _threshold_curves(yk: np.ndarray, pk: np.ndarray, grid: np.ndarray):
    """F1, sensitivity, specificity of the rule ``p >= t`` for every t in grid (exact, by counting)."""
    pos = np.sort(pk[yk == 1])
    neg = np.sort(pk[yk == 0])
    tp = len(pos) - np.searchsorted(pos, grid, side="left")
    fp = len(neg) - np.searchsorted(neg, grid, side="left")
    fn = len(pos) - tp
    tn = len(neg) - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
        sens = tp / len(pos) if len(pos) else np.full(grid.shape, np.nan)
        spec = tn / len(neg) if len(neg) else np.full(grid.shape, np.nan)
    return f1, sens, spec


def _thresholds(out_dir: Path, y, p, classes, thr, default: bool, title: str) -> list[Path]:
    from matplotlib.lines import Line2D

    k = len(classes)
    grid = np.linspace(0, 1, 1001)
    colours = {"F1": CURVE, "sensitivity": "#ff7f0e", "specificity": "#2ca02c"}
    handles = [Line2D([], [], color=c, lw=1.6 if n == "F1" else 1.1, label=n) for n, c in colours.items()]
    handles.append(Line2D([], [], color=POINT, ls="--", lw=1, marker="o", ms=5, mec="white",
                          label="chosen threshold" + (" (default 0.5)" if default else "")))
    pages = _paginate(list(range(k)))
    paths = []
    for page, chunk in enumerate(pages):
        heading = _heading("Metrics vs decision threshold (positive when p ≥ t)", title, page, len(pages), chunk, k)
        g = _Grid(len(chunk), heading, handles)
        for ax, j in zip(g.axes, chunk):
            yk, pk = y[:, j], p[:, j]
            _unit_axes(ax)
            why = _degenerate(yk)
            ax.axvline(thr[j], color=POINT, ls="--", lw=1, zorder=1)
            if why is not None:
                _panel_title(ax, classes[j], f"t={thr[j]:.3g} · n+={int(yk.sum())}")
                _no_curve(ax, why)
                continue
            f1, sens, spec = _threshold_curves(yk, pk, grid)
            ax.plot(grid, sens, color=colours["sensitivity"], lw=1.1, zorder=2)
            ax.plot(grid, spec, color=colours["specificity"], lw=1.1, zorder=2)
            ax.plot(grid, f1, color=colours["F1"], lw=1.6, zorder=3)
            f1_t = _threshold_curves(yk, pk, np.array([thr[j]]))[0][0]
            ax.plot(thr[j], f1_t, "o", ms=5, color=POINT, mec="white", mew=0.8, zorder=4)
            _panel_title(ax, classes[j], f"t={thr[j]:.3g} · F1 {f1_t:.3f}")
        g.labels("Threshold t", "Metric value")
        paths.append(_save(g.fig, out_dir / _page_name("thresholds", page)))
    return paths


# ---------------------------------------------------------------- entry point

def write_report_plots(out_dir: Path, y: np.ndarray, p: np.ndarray, classes: list[str], multi_label: bool,
                       thresholds: np.ndarray | None, title: str = "") -> list[Path]:
    """Write the report's PNG figures into the existing directory ``out_dir``; return their paths.

    See the module docstring for the files. ``thresholds`` are the per-class
    decision thresholds of a multi-label task (None: 0.5, as
    :func:`~ecgtool.eval.metrics.predict_labels`); ignored for multi-class.
    """
    import matplotlib

    out_dir = Path(out_dir)
    y = np.asarray(y)
    p = np.asarray(p, dtype=float)
    classes = [str(c) for c in classes]
    if y.ndim != 2 or y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} must both be [N, K]")
    if y.shape[1] != len(classes):
        raise ValueError(f"{len(classes)} class names for {y.shape[1]} columns")
    if len(y) == 0:
        raise ValueError("no records to plot")
    if not out_dir.is_dir():
        raise FileNotFoundError(f"no such directory: {out_dir}")
    k = len(classes)
    default = multi_label and thresholds is None
    thr = np.full(k, 0.5) if thresholds is None else np.asarray(thresholds, dtype=float)
    if multi_label and thr.shape != (k,):
        raise ValueError(f"{thr.size} thresholds for {k} classes")
    yhat = predict_labels(p, multi_label, thr if multi_label else None)

    paths: list[Path] = []
    with matplotlib.rc_context(STYLE):
        paths += _curve_figures(out_dir, "roc", y, p, yhat, classes, multi_label, title)
        paths += _curve_figures(out_dir, "pr", y, p, yhat, classes, multi_label, title)
        paths.append(_reliability(out_dir, y, p, multi_label, title))
        if multi_label:
            paths += _confusion_multilabel(out_dir, y, yhat, classes, thr, title)
            paths += _thresholds(out_dir, y, p, classes, thr, default, title)
        else:
            paths.append(_confusion_multiclass(out_dir, y, p, classes, title))
    return paths
