"""Figures: saved under figures/ with the given part-numbered name, then closed; curves drawn
from records' histories; the heat map annotates every cell."""
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from kdutils.core import plots
from kdutils.core.profiles import figures_dir


def _record(run, top1, loss=None, label=None):
    hist = [{"epoch": e + 1, "test_top1": t, "train_top1": t - 1, "test_loss": None if loss is None else loss[e],
             "train_loss": None if loss is None else loss[e] + 0.1} for e, t in enumerate(top1)]
    rec = {"run": run, "history": hist}
    if label:
        rec["label"] = label
    return rec


RECORDS = [
    _record("teacher", [10.0, 20.0, 30.0], loss=[2.0, 1.5, 1.0], label="Teacher"),
    _record("student", [5.0, 15.0]),
    {"run": "empty", "history": []},
]


def test_save_figure_writes_a_png_under_figures_and_closes_it(tmp_path):
    assert figures_dir() == tmp_path / "out" / "figures"  # conftest: outputs under the test's folder
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = plots.save_figure(fig, "part3_demo", show=False)
    assert path == figures_dir() / "part3_demo.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    assert not plt.fignum_exists(fig.number)
    again = plots.save_figure(plt.figure(), "part3_demo.png", show=False)  # no second suffix
    assert again == path and sorted(p.name for p in figures_dir().iterdir()) == ["part3_demo.png"]


def test_plot_curves_one_line_per_record_and_key():
    fig = plots.plot_curves(RECORDS, title="accuracy")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["Teacher", "student"]  # the empty record draws nothing
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3] and list(ax.lines[0].get_ydata()) == [10.0, 20.0, 30.0]
    assert list(ax.lines[1].get_ydata()) == [5.0, 15.0]
    assert ax.lines[0].get_marker() == "o"  # few points: markers
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "test top-1 (%)" and ax.get_title() == "accuracy"
    assert ax.get_legend() is not None
    plt.close(fig)


def test_plot_curves_on_given_axes_several_keys_and_labels():
    fig, ax = plt.subplots()
    out = plots.plot_curves(RECORDS[:1], ("train_loss", "test_loss"), "loss", ax=ax, labels=["T"])
    assert out is ax
    assert [line.get_label() for line in ax.lines] == ["T (train_loss)", "T (test_loss)"]
    assert [line.get_linestyle() for line in ax.lines] == ["-", "--"]
    assert list(ax.lines[1].get_ydata()) == [2.0, 1.5, 1.0]
    plt.close(fig)


def test_plot_curves_skips_missing_values():
    fig = plots.plot_curves([_record("s", [1.0, 2.0])], ("test_loss",), "loss")  # losses are None
    assert len(fig.axes[0].lines) == 0 and fig.axes[0].get_legend() is None
    plt.close(fig)


def test_plot_train_test_two_panels_saved_by_name():
    fig = plots.plot_train_test(RECORDS, "loss", title="Teacher and student")
    left, right = fig.axes
    assert (left.get_title(), right.get_title()) == ("train", "test")
    assert (left.get_ylabel(), right.get_ylabel()) == ("train loss", "test loss")
    assert list(left.lines[0].get_ydata()) == pytest.approx([2.1, 1.6, 1.1])
    assert fig._suptitle.get_text() == "Teacher and student"
    top1 = plots.plot_train_test(RECORDS, "top1")
    assert top1.axes[1].get_ylabel() == "test top1 (%)" and len(top1.axes[1].lines) == 2
    path = plots.save_figure(top1, "part2_accuracy", show=False)
    assert path.name == "part2_accuracy.png" and path.parent == figures_dir()
    plt.close(fig)


def test_plot_heatmap_annotates_every_cell():
    table = pd.DataFrame([[50.0, 60.25], [70.0, 80.0]], index=pd.Index([0.1, 0.5], name="lam"),
                         columns=pd.Index([5, 10], name="T"))
    fig = plots.plot_heatmap(table, title="T x lambda")
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["50.0", "60.2", "70.0", "80.0"]
    assert ax.get_title() == "T x lambda" and ax.get_xlabel() == "T" and ax.get_ylabel() == "lam"
    assert fig.axes[1].get_ylabel() == "test top-1 (%)"  # the colour bar
    plt.close(fig)



def test_epoch_axis_has_whole_epochs_only():
    """One epoch gets the tick 1, not 0.96 ... 1.04 (issue 16)."""
    fig = plots.plot_curves([_record("one", [12.0])])
    ax = fig.axes[0]
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    shown = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert shown == [1.0]
    fig3 = plots.plot_curves([_record("three", [1.0, 2.0, 3.0])])
    assert all(float(t).is_integer() for t in fig3.axes[0].get_xticks())
    plt.close(fig)
    plt.close(fig3)


def test_heatmap_annotations_stay_readable_when_printed_small():
    """A 4x4 sweep: 12-pt annotations on a figure under 5 inches wide, so that printed at
    half its size in the report's figure row they keep 6 pt."""
    table = pd.DataFrame([[50.0] * 4] * 4, index=pd.Index([0.1, 0.3, 0.5, 0.9], name="lam"),
                         columns=pd.Index([2, 5, 10, 20], name="T"))
    fig = plots.plot_heatmap(table)
    sizes = {t.get_fontsize() for t in fig.axes[0].texts}
    assert sizes == {12.0} and fig.get_size_inches()[0] <= 5.0
    assert plots.heatmap_font_size(4, 12) == 8.0 and plots.heatmap_font_size(3, 3) == 12.0
    plt.close(fig)


def test_saved_figures_are_high_resolution(tmp_path):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [1, 0])
    path = plots.save_figure(fig, "part9_dpi", show=False)
    import matplotlib.image as mpimg

    assert plots.FIGURE_DPI >= 200 and mpimg.imread(path).shape[1] >= 4 * 200 * 0.9  # bbox "tight" trims a little
