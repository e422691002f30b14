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

