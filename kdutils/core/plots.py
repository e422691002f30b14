"""Figures: saved as PNG under ``figures/`` (named ``part<N>_<what>.png``, 200 dpi so that
they stay sharp when the report prints them at a third of a page), shown inline, then closed
so notebooks do not pile up open figures. Epoch axes get integer ticks only; heat-map
annotations are sized to stay readable when the figure is printed small."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

import matplotlib

matplotlib.use(matplotlib.get_backend())  # keep the notebook's inline backend
import matplotlib.pyplot as plt  # noqa: E402

from kdutils.core.profiles import figures_dir  # noqa: E402


#: Resolution of the saved PNGs (a 6.4-inch figure printed 3 inches wide keeps ~430 dpi).
FIGURE_DPI = 200


def save_figure(fig, name: str, show: bool = True, dpi: int = FIGURE_DPI) -> Path:
    """Save ``fig`` as ``figures/<name>`` (PNG), display it in a notebook, close it."""
    if not name.endswith(".png"):
        name += ".png"
    path = figures_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    if show:
        try:
            from IPython import get_ipython
            from IPython.display import display

            if get_ipython() is not None:
                display(fig)
        except ImportError:
            pass
    plt.close(fig)
    return path


def _label(rec: Mapping) -> str:
    return rec.get("label") or rec.get("run") or "?"


def plot_curves(records: Iterable[Mapping], keys: Sequence[str] = ("test_top1",), ylabel: str = "test top-1 (%)",
                title: str = "", ax=None, labels: Optional[Sequence[str]] = None):
    """Epoch vs one or more history keys, one line per record (and per key)."""
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6.4, 4))
    styles = ["-", "--", ":", "-."]
    records = list(records)
    for i, rec in enumerate(records):
        hist = rec.get("history") or []
        for j, key in enumerate(keys):
            pts = [(h["epoch"], h[key]) for h in hist if h.get(key) is not None]
            if not pts:
                continue
            x, y = zip(*pts)
            name = labels[i] if labels else _label(rec)
            suffix = f" ({key})" if len(keys) > 1 else ""
            ax.plot(x, y, styles[j % len(styles)], color=f"C{i % 10}", marker="o" if len(x) < 15 else None,
                    markersize=3, label=f"{name}{suffix}")
    ax.set_xlabel("epoch")
    integer_epochs(ax)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7)
    return ax.figure if own else ax


def integer_epochs(ax) -> None:
    """Ticks on whole epochs only (a one-epoch curve gets the tick 1, not 0.96 ... 1.04)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def plot_train_test(records: Iterable[Mapping], metric: str = "loss", title: str = ""):
    """Two panels side by side: train and test ``metric`` (``loss`` or ``top1``) vs epoch."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    records = list(records)
    unit = " (%)" if metric != "loss" else ""
    plot_curves(records, (f"train_{metric}",), f"train {metric}{unit}", "train", ax=axes[0])
    plot_curves(records, (f"test_{metric}",), f"test {metric}{unit}", "test", ax=axes[1])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def heatmap_font_size(n_rows: int, n_cols: int) -> float:
    """Annotation size (points) of a heat map of ``n_rows`` x ``n_cols`` cells drawn by
    :func:`plot_heatmap`: 12 pt for up to 4 columns, smaller for wider tables, never under 8."""
    return float(max(8, 12 - max(0, n_cols - 4)))


def plot_heatmap(table, title: str = "", fmt: str = ".1f", cbar_label: str = "test top-1 (%)"):
    """A heat map of a pandas pivot table (index on y, columns on x), every cell annotated.

    Cells are about 0.8 x 0.55 inches and the annotations 8-12 pt (:func:`heatmap_font_size`),
    so the numbers stay legible when the saved figure is printed at half its size (the
    report's figure row); the colours carry the ranking, the numbers the values."""
    import seaborn as sns

    n_rows, n_cols = table.shape
    fig, ax = plt.subplots(figsize=(0.8 * max(3, n_cols) + 1.6, 0.55 * max(3, n_rows) + 1.1))
    size = heatmap_font_size(n_rows, n_cols)
    sns.heatmap(table, annot=True, fmt=fmt, cmap="viridis", ax=ax, annot_kws={"fontsize": size},
                cbar_kws={"label": cbar_label})
    ax.tick_params(labelsize=size - 1)
    ax.xaxis.label.set_size(size)
    ax.yaxis.label.set_size(size)
    if title:
        ax.set_title(title, fontsize=size)
    fig.tight_layout()
    return fig
