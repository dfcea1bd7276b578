"""What a reader sees in the figures: every series visible (distinct markers, dodged drawing),
legends outside the axes and drawn in the curves' own styles, a band over seeds only with 2
seeds or more, a bounded width with readable fonts, plain tick labels on a log axis spanning less
than a decade, and diverged runs marked instead of dropped. Each property is read off the
matplotlib Figure (artists, legend handles, window extents, tick label texts, pixel size)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from seqbench.plots import DPI, MAX_WIDTH_IN, MIN_FONT_PT
from seqbench.plots.decay import plot_decay
from seqbench.plots.runs import curves_figure, loss_figure, solve_rate_figure, solved_figure
from seqbench.results import RUN_COLUMNS, append_rows

RESULTS = Path(__file__).resolve().parents[1] / "results"
BASE = dict(variant="halves", impl="builtin", hidden=64, layers=1, nonlinearity="tanh", lr=0.001,
            clip=1.0, batch_size=64, step_budget=3000, status="ok", baseline_loss=1 / 6,
            accuracy=0.5, throughput_seq_s=100.0, label="")


def run_rows(task="copy", cells=("rnn", "lstm", "gru"), seq_lens=(10, 25, 50), seeds=(0, 1, 2),
             ratio=lambda cell, T, seed: 0.95 + 0.01 * seed, solved=lambda *a: False, **extra):
    return [{**BASE, "task": task, "cell": cell, "seq_len": T, "seed": seed,
             "config_id": f"{task}{cell}{T}{seed}", "loss_ratio": ratio(cell, T, seed),
             "solved": solved(cell, T, seed), "solved_step": 500 if solved(cell, T, seed) else None,
             **extra}
            for cell in cells for T in seq_lens for seed in seeds]


def write(tmp_path, rows, name="runs.csv"):
    path = tmp_path / name
    append_rows(path, rows, RUN_COLUMNS)
    return path


def drawn(fig):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def png_size(fig) -> tuple[int, int]:
    """The pixel size of the PNG the CLI writes (bbox_inches="tight", DPI)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    width, height = struct.unpack(">II", buf.getvalue()[16:24])
    return width, height


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def labelled(ax):
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def assert_legends_outside(fig):
    renderer = drawn(fig)
    for ax in visible_axes(fig):
        legend = ax.get_legend()
        if legend is None:
            continue
        box, frame = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert box.x0 >= frame.x1, "the legend sits right of the axes, never on the data"
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 + 1, "and inside the figure"


def assert_fonts_readable(fig):
    drawn(fig)
    sizes = [t.get_fontsize() for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip()]
    assert sizes and min(sizes) >= MIN_FONT_PT, min(sizes)


def assert_legend_matches_lines(ax):
    """Each legend entry of a drawn line has that line's colour, dashes and marker."""
    legend = ax.get_legend()
    lines = {line.get_label(): line for line in ax.get_lines()}
    checked = 0
    for handle, text in zip(legend.legend_handles, legend.get_texts()):
        # a decay legend adds the fitted factor to the line's label: 'rnn: x0.5/step'
        line = lines.get(text.get_text(), lines.get(text.get_text().split(": x")[0]))
        if line is None or not hasattr(handle, "get_linestyle"):
            continue
        assert handle.get_linestyle() == line.get_linestyle(), text.get_text()
        assert handle._dash_pattern == line._dash_pattern, text.get_text()
        assert handle.get_marker() == line.get_marker(), text.get_text()
        assert handle.get_color() == line.get_color(), text.get_text()
        checked += 1
    return checked


# -- overlapping series ------------------------------------------------------------------------------


def test_solve_rates_on_top_of_each_other_stay_visible(tmp_path):
    """Nothing solved: three lines at 0. Each has its own marker, and each is drawn a few points
    away from the others (the data stay exact)."""
    fig = solve_rate_figure(write(tmp_path, run_rows()))
    (ax,) = visible_axes(fig)
    lines = labelled(ax)
    assert [line.get_label() for line in lines] == ["rnn", "lstm", "gru"]
    assert len({line.get_marker() for line in lines}) == 3
    assert all(list(line.get_ydata()) == [0, 0, 0] for line in lines)
    assert all(list(line.get_xdata()) == [10, 25, 50] for line in lines)
    drawn(fig)
    starts = [tuple(np.round(line.get_transform().transform((10, 0)), 3)) for line in lines]
    assert len(set(starts)) == 3, "the same point is drawn at three places"


def test_hand_written_twin_is_not_hidden_under_builtin():
    """The gradient decay of a hand-written cell equals its builtin twin's: two lines with
    different markers and dashes, drawn apart, and both in the legend with their own style."""
    rows = []
    for impl in ("builtin", "hand"):
        for seed in (0, 1):
            rows += decay_rows("lstm", impl=impl, seed=seed)
    fig = plot_decay(pd.DataFrame(rows))
    (ax,) = visible_axes(fig)
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) > 1]
    assert len(lines) == 2
    assert np.allclose(lines[0].get_ydata(), lines[1].get_ydata())  # the same numbers
    assert lines[0].get_marker() != lines[1].get_marker()
    assert lines[0].get_linestyle() != lines[1].get_linestyle()
    drawn(fig)
    a, b = (line.get_transform().transform((5, lines[0].get_ydata()[5])) for line in lines)
    assert abs(a[0] - b[0]) >= 1.0, "drawn apart"
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("(builtin)" in t for t in texts) and any("(hand)" in t for t in texts)


def test_km_curves_that_coincide_are_drawn_apart(tmp_path):
    fig = solved_figure(write(tmp_path, run_rows(seq_lens=(10,))))
    (ax,) = visible_axes(fig)
    curves = [line for line in labelled(ax) if "solved)" in line.get_label()]
    assert len(curves) == 3 and len({line.get_marker() for line in curves}) == 3
    drawn(fig)
    ys = {round(float(line.get_transform().transform((500, 0))[1]), 2) for line in curves}
    assert len(ys) == 3


# -- legends ------------------------------------------------------------------------------------------


def test_legends_sit_outside_the_axes_in_every_figure(tmp_path):
    path = write(tmp_path, run_rows() + run_rows(task="adding", seeds=(0, 1)))
    bars = write(tmp_path, run_rows(seq_lens=(25,), cells=("rnn", "lstm", "gru", "indrnn")),
                 "bars.csv")
    figures = [solve_rate_figure(path), loss_figure(path), solved_figure(path),
               solve_rate_figure(bars), loss_figure(bars),
               plot_decay(pd.DataFrame(decay_rows("rnn") + decay_rows("gru"))),
               plot_decay(pd.DataFrame(fixes_rows()), by_family=True)]
    for fig in figures:
        assert any(ax.get_legend() is not None for ax in visible_axes(fig))
        assert_legends_outside(fig)


def test_decay_legend_handles_have_the_curves_styles():
    """The committed grads hold the hand-written cells only: dashed curves, dashed handles."""
    fig = plot_decay(pd.DataFrame(decay_rows("rnn", impl="hand") + decay_rows("lstm", impl="hand")))
    (ax,) = visible_axes(fig)
    assert assert_legend_matches_lines(ax) == 2
    legend = ax.get_legend()
    dashed = [h for h in legend.legend_handles if h.get_linestyle() == "--"]
    assert len(dashed) == 2  # not solid handles for dashed curves


def test_run_figure_legend_handles_have_the_curves_styles(tmp_path):
    path = write(tmp_path, run_rows(task="adding", solved=lambda c, T, s: c == "gru"))
    for fig in (solve_rate_figure(path), solved_figure(path)):
        for ax in visible_axes(fig):
            assert assert_legend_matches_lines(ax) >= 3


# -- bands, sizes, fonts, ticks -------------------------------------------------------------------


def test_one_seed_has_no_band_and_does_not_announce_one():
    one = plot_decay(pd.DataFrame(decay_rows("rnn") + decay_rows("lstm")))
    assert "band" not in one._suptitle.get_text() and "1 seed" in one._suptitle.get_text()
    assert not [c for ax in one.axes for c in ax.collections if str(c.get_gid()).startswith("band")]
    two = plot_decay(pd.DataFrame(decay_rows("rnn") + decay_rows("rnn", seed=1)))
    assert "band: +-1 sd of log10 norm over seeds" in two._suptitle.get_text()
    assert [c for ax in two.axes for c in ax.collections if str(c.get_gid()).startswith("band")]


def test_loss_figure_of_one_seed_claims_no_interval(tmp_path):
    fig = loss_figure(write(tmp_path, run_rows(seeds=(0,))))
    title = visible_axes(fig)[0].get_title()
    assert "no interval" in title and "bootstrap" not in title


@pytest.mark.parametrize("draw", [solve_rate_figure, loss_figure, solved_figure])
def test_the_committed_runs_fit_the_width_with_readable_fonts(draw):
    """results/runs.csv (3 tasks x 4 lags) made 2,500-3,300 px wide figures; facets now wrap."""
    fig = draw(RESULTS / "runs.csv")
    width, _height = png_size(fig)
    assert width <= 2000 and fig.get_size_inches()[0] <= MAX_WIDTH_IN
    assert_fonts_readable(fig)


def test_the_committed_fixes_fit_the_width_with_readable_fonts():
    from seqbench.grads import read_grads

    grads = read_grads([RESULTS / "fixes" / "grads_init.csv"])
    fig = plot_decay(grads, task="delayed_recall", by_family=True)
    assert png_size(fig)[0] <= 2000
    assert_fonts_readable(fig)
    fig = solve_rate_figure(RESULTS / "fixes" / "runs.csv", select=("lr",))
    assert png_size(fig)[0] <= 2000
    assert_fonts_readable(fig)


def test_many_panels_wrap_into_rows(tmp_path):
    rows = []
    for task in ("adding", "copy", "delayed_recall", "temporal_order", "selective_copy"):
        rows += run_rows(task=task, seeds=(0,), variant=None)
    fig = solve_rate_figure(write(tmp_path, rows))
    assert len(visible_axes(fig)) == 5
    assert png_size(fig)[0] <= 2000
    lefts = {round(ax.get_position().x0, 3) for ax in visible_axes(fig)}
    assert len(lefts) <= 2  # at most two panels side by side


def test_log_axis_under_a_decade_has_plain_decimal_ticks(tmp_path):
    """Loss ratios between 0.93 and 1.0 (copy): '0.94', not '9.4x10^-1'."""
    fig = loss_figure(write(tmp_path, run_rows(ratio=lambda c, T, s: 0.93 + 0.02 * s
                                                + 0.005 * ("rnn", "lstm", "gru").index(c))))
    (ax,) = visible_axes(fig)
    assert ax.get_yscale() == "log"
    drawn(fig)
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)
              if t.get_text()]
    assert len(labels) >= 3
    assert not [t for t in labels if "times" in t or "^" in t], labels
    assert all(0.9 <= float(t) <= 1.1 for t in labels), labels


def test_wide_log_axis_keeps_decades():
    fig = plot_decay(pd.DataFrame(decay_rows("rnn")))
    drawn(fig)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert any("10^" in t for t in labels), labels


# -- diverged runs ------------------------------------------------------------------------------------


def test_a_diverged_run_is_marked_not_dropped(tmp_path):
    """rnn at T=50: both seeds diverged (no mean to draw); at T=25 one of two did."""
    rows = run_rows(cells=("rnn", "lstm"), seeds=(0, 1))
    for r in rows:
        if r["cell"] == "rnn" and (r["seq_len"] == 50 or (r["seq_len"] == 25 and r["seed"] == 0)):
            r.update(status="diverged", loss_ratio=None)
    fig = loss_figure(write(tmp_path, rows))
    (ax,) = visible_axes(fig)
    marks = [line for line in ax.get_lines() if line.get_gid() == "diverged: rnn"]
    assert sorted(float(m.get_xdata()[0]) for m in marks) == [25, 50]
    assert all(m.get_ydata()[0] == 1.0 for m in marks)  # at the top edge (axes coordinates)
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["1/2 diverged", "2/2 diverged"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("diverged" in t for t in legend) and "rnn" in legend


def test_a_diverged_configuration_at_one_lag_is_marked(tmp_path):
    rows = run_rows(seq_lens=(25,), seeds=(0, 1))
    for r in rows:
        if r["cell"] == "gru":
            r.update(status="diverged", loss_ratio=None)
    fig = loss_figure(write(tmp_path, rows))
    (ax,) = visible_axes(fig)
    assert "2/2 diverged" in [t.get_text() for t in ax.texts]
    assert any("diverged" in t.get_text() for t in ax.get_legend().get_texts())


def test_a_diverged_learning_curve_is_marked(tmp_path):
    import json

    run_dir = tmp_path / "r0"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({
        "task": "adding", "variant": None, "seq_len": 10, "seed": 0, "label": "",
        "cell": {"cell": "rnn", "impl": "builtin", "hidden": 8, "layers": 1}}))
    (run_dir / "curve.csv").write_text("step,train_loss,eval_loss,accuracy,grad_norm,elapsed_s\n"
                                       "0,,0.2,0.1,,0.0\n100,0.15,0.1,0.3,1.0,1.0\n"
                                       "200,nan,inf,0.0,nan,2.0\n")
    fig = curves_figure([run_dir])
    (ax,) = visible_axes(fig)
    (mark,) = [line for line in ax.get_lines() if line.get_gid() == "diverged"]
    assert float(mark.get_xdata()[0]) == 200
    assert "diverged" in [t.get_text() for t in ax.texts]


# -- data -------------------------------------------------------------------------------------------


def decay_rows(cell, impl="hand", seed=0, label="", factor=None, lags=30, **options):
    """One probe at initialization: norm = factor ** lag."""
    factor = factor or {"rnn": 0.5, "lstm": 0.7, "gru": 0.8}.get(cell, 0.9)
    probe = f"{cell}-{impl}-{label}-{seed}-{sorted(options.items())}"
    return [{"probe_id": probe, "run_id": "", "task": "adding", "variant": "halves",
             "seq_len": lags, "cell": cell, "impl": impl, "hidden": 8, "layers": 1, "layer": 0,
             "nonlinearity": "tanh", "init": "default", "init_gain": 1.0, "forget_bias": None,
             "chrono": False, "norm": "none", "residual": False, "seed": seed, "step": 0,
             "lag": k, "grad_norm": factor ** k * (1 + 0.1 * seed), "decay_factor": factor,
             "label": label, **options}
            for k in range(lags)]


def fixes_rows():
    return (decay_rows("rnn", label="rnn_tanh") + decay_rows("rnn", label="irnn", factor=0.99,
                                                             init="identity")
            + decay_rows("lstm", label="lstm_fb1", forget_bias=1.0))


@pytest.mark.parametrize("metric", ["solve_rate", "loss"])
def test_the_committed_length_generalization_figure_is_readable(metric):
    """results/lengths (6 arms, trained at T = 25, tested at 50-200): every figure rule holds,
    and the lag trained at is marked in each panel."""
    from seqbench.plots.lengths import lengths_figure

    fig = lengths_figure(RESULTS / "lengths" / "runs.csv", metric=metric)
    assert png_size(fig)[0] <= 2000 and fig.get_size_inches()[0] <= MAX_WIDTH_IN
    assert_fonts_readable(fig)
    assert_legends_outside(fig)
    for ax in visible_axes(fig):
        assert any("lag trained at (T = 25)" == line.get_label() for line in ax.get_lines())
