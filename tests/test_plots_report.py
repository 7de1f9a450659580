"""Figures and the HTML report drawn from a synthetic results table; `infodyn plot`."""
import base64
import io
import math
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from infodyn import plots, report
from infodyn import tradeoff as tr
from infodyn.cli import main
from test_tradeoff import synthetic_table


@pytest.fixture(scope="module")
def table():
    return pd.concat([synthetic_table(peaks=(3, 4), turn=(4, 5), epochs=6),
                      synthetic_table(peaks=(2, 2), turn=(3, 3), epochs=6, config="ctc")], ignore_index=True)


@pytest.fixture(scope="module")
def drawn(table, tmp_path_factory):
    """plot_all of the table, drawn once for the tests that only read the files."""
    out = tmp_path_factory.mktemp("figs")
    return out, plots.plot_all(table, out)


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def figures(monkeypatch):
    """Captures every figure the plotting functions close: a list of matplotlib Figures."""
    import matplotlib.pyplot as plt

    got = []
    real_close = plt.close

    def grab(fig=None):
        if fig is not None and hasattr(fig, "axes"):
            got.append(fig)
        return real_close(fig)

    monkeypatch.setattr(plt, "close", grab)
    return got


def _texts(fig):
    """(raw string, string as drawn, parsed as math?) of every visible text of a figure."""
    import matplotlib.text

    out = []
    for t in fig.findobj(matplotlib.text.Text):
        raw = t.get_text()
        if raw and t.get_visible():
            shown, math_ = t._preprocess_math(raw)
            out.append((raw, shown, math_))
    return out


def test_plot_all_writes_every_figure(drawn):
    tmp_path, figs = drawn
    assert set(figs) == {"information_plane", "tradeoff", "compression_vs_transfer", "estimators"}
    assert all(_is_png(p) and p.stat().st_size > 5000 for p in figs.values())
    assert not list(tmp_path.glob(".*.tmp"))


def test_axes_carry_units_and_human_labels(table, tmp_path, figures):
    plots.information_plane(table, tmp_path / "a.png")
    plots.estimator_comparison(table, tmp_path / "b.png")
    plots.tradeoff_curves(table, tmp_path / "c.png")
    plots.compression_vs_transfer(table, tmp_path / "d.png")
    labels = [ax.get_xlabel() + "|" + ax.get_ylabel() for f in figures for ax in f.axes if ax.get_visible()]
    assert "I(X;T) [bits] (binning)|I(T;Y) [bits]" in labels  # the information plane
    assert "epoch|I(T;Y) [bits]" in labels  # the estimator comparison
    assert "epoch|accuracy [fraction]" in labels  # the trade-off curves
    assert "I(X;T) [bits] (kde)|target linear probe accuracy [fraction]" in labels
    for pair in labels:  # colour bars aside, every axis names its unit (time is in epochs here)
        x, y = pair.split("|")
        if x:  # colour bars have only a y label ("epoch")
            assert (x == "epoch" or "[" in x) and "[" in y, pair
    legend = {t.get_text() for f in figures for ax in f.axes if ax.get_legend() for t in ax.get_legend().get_texts()}
    assert "target linear probe accuracy" in legend and "source accuracy (model's head)" in legend
    assert not any("linear_probe_acc" in x for x in labels + sorted(legend))  # no column names on axes


def test_measure_labels():
    assert plots.measure_label("linear_probe_acc", "target") == "target linear probe accuracy [fraction]"
    assert plots.measure_label("knn_acc", "source", unit=False) == "source k-NN accuracy"
    assert plots.measure_label("fewshot_probe_acc", "target", unit=False) == "target few-shot probe accuracy"
    assert plots.measure_label("I(X;T)") == "I(X;T) [bits]"
    assert plots.measure_label("my$metric") == r"my\$metric"  # unknown names come back, drawn literally


def test_figures_skip_what_the_table_lacks(table, tmp_path):
    only_acc = table[table["measure"].isin(["source_acc", "linear_probe_acc"])]
    figs = plots.plot_all(only_acc, tmp_path)
    assert set(figs) == {"tradeoff"}
    one_method = table[table["method"] != "kde"]
    assert plots.estimator_comparison(one_method, tmp_path / "e.png") is None


def _saturated_table():
    """The synthetic table with every binning I(X;T) of config 'ce' at log n (n = 100 samples)."""
    df = synthetic_table(peaks=(3, 4), turn=(4, 5), epochs=6)
    sel = (df["measure"] == "I(X;T)") & (df["method"] == "binning")
    df.loc[sel, "value"] = math.log(100) * (1 - 0.002 * df.loc[sel, "epoch"] / 5)  # noise within 0.2 %
    return df


def test_saturation_flag_closed_form():
    logn = math.log(100)
    df = pd.DataFrame({"measure": ["I(X;T)", "I(X;T)", "I(X;T)", "I(T;Y)", "I(X;T)"],
                       "value": [logn, 0.995 * logn, 0.98 * logn, logn, math.log(4096)],
                       "n": [100, 100, 100, 100, 4096]})
    assert plots.saturated(df).tolist() == [True, True, False, False, True]
    assert plots.saturated(df, rel_tol=0.03).tolist() == [True, True, True, False, True]
    assert not plots.saturated(df.assign(n=1)).any()  # n = 1: log n = 0 is no ceiling to be near


def test_saturated_estimate_is_drawn_as_such(tmp_path, figures):
    df = _saturated_table()
    plots.information_plane(df, tmp_path / "a.png", method="binning")
    plots.estimator_comparison(df, tmp_path / "b.png")
    notes = [shown for f in figures for _, shown, _ in _texts(f) if shown.startswith("saturated")]
    assert notes and all(f"log2 n = {math.log2(100):.2f} bits (n = 100)" in n for n in notes)
    plane = figures[0].axes[0]
    lo, hi = plane.get_xlim()
    assert hi - lo >= plots.MIN_SPAN_BITS  # 0.01 bits of noise is not blown up to the panel width
    assert lo <= math.log2(100) <= hi
    assert any(p.get_alpha() and abs(p.get_x() - 0.99 * math.log2(100)) < 1e-6 for p in plane.patches)  # the band
    # the KDE row of the same table is not saturated: its panels get no note
    figures.clear()
    plots.information_plane(df, tmp_path / "c.png", method="kde")
    assert not [s for f in figures for _, s, _ in _texts(f) if s.startswith("saturated")]


def test_names_are_drawn_literally(tmp_path, figures):
    df = synthetic_table(peaks=(3, 4), turn=(4, 5), epochs=6, config="lr$1e-3$^")
    df["layer"] = df["layer"].replace({"fc1": "fc$x$"})
    figs = plots.plot_all(df, tmp_path)  # unescaped, "$1e-3$^" is a math-text error
    assert len(figs) == 4 and all(_is_png(p) for p in figs.values())
    texts = [t for f in figures for t in _texts(f)]
    shown = " ".join(s for _, s, _ in texts)
    assert "lr$1e-3$^" in shown and "fc$x$" in shown and "lr$1e-3$^-seed1" in shown
    assert not [raw for raw, _, is_math in texts if "$" in raw and is_math and "mathdefault" not in raw]  # ticks


def test_log_spaced_epochs_get_a_log_axis(tmp_path, figures):
    assert plots._log_spaced([0, 1, 2, 4, 8, 16, 32, 64, 128])
    assert not plots._log_spaced(range(0, 130, 10))
    assert not plots._log_spaced([0, 1, 2, 3, 4, 5])
    epochs = [0, 1, 2, 4, 8, 16, 32, 64, 128]
    df = synthetic_table(peaks=(3, 4), turn=(4, 5), epochs=len(epochs))
    df["epoch"] = df["order"].map(dict(enumerate(epochs)))
    plots.tradeoff_curves(df, tmp_path / "t.png")
    axes = [ax for ax in figures[0].axes if ax.get_visible()]
    assert axes and all(ax.get_xscale() == "symlog" for ax in axes)
    assert all(ax.get_xlim()[0] == 0 for ax in axes)  # epoch 0 is drawn, nothing left of it
    assert all(ax.get_xlabel() == "epoch (log scale)" for ax in axes)
    figures.clear()
    plots.tradeoff_curves(synthetic_table(epochs=6), tmp_path / "u.png")
    assert all(ax.get_xscale() == "linear" for ax in figures[0].axes if ax.get_visible())


def test_panels_keyed_by_config_and_layer_colours_fixed(table, tmp_path, figures):
    plots.estimator_comparison(table, tmp_path / "e.png")
    fig = figures[0]
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert {"ce, layer fc1 (2 seeds)", "ctc, layer fc1 (2 seeds)", "ce, layer fc2 (2 seeds)"} <= set(titles)
    colours = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_label() in ("kde", "binning"):
                colours.setdefault(line.get_label(), set()).add(line.get_color())
    assert len(colours["kde"]) == 1 and len(colours["binning"]) == 1 and colours["kde"] != colours["binning"]


def test_each_seed_distinguishable(table, tmp_path, figures):
    plots.compression_vs_transfer(table, tmp_path / "c.png")
    ax = [a for a in figures[0].axes if a.get_title() == "ce, layer fc1"][0]
    entries = [t.get_text() for t in ax.get_legend().get_texts()]
    assert entries == ["ce-seed0", "ce-seed1"]
    runs = [l for l in ax.get_lines() if l.get_label() in entries]
    assert len({l.get_color() for l in runs}) == 2 and len({l.get_marker() for l in runs}) == 2
    figures.clear()
    plots.tradeoff_curves(table, tmp_path / "t.png")
    ax = [a for a in figures[0].axes if a.get_title().startswith("ce, layer fc1")][0]
    assert {"ce-seed0", "ce-seed1"} <= {t.get_text() for t in ax.get_legend().get_texts()}
    lo, hi = ax.get_ylim()
    assert lo > 0.3 and hi <= 1.01  # zoomed to the data (0.5-0.9), not the whole [0, 1]


class _Doc(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.hrefs, self.sections, self.text, self.imgs = set(), [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "img":
            self.imgs.append(a["src"])

    def handle_data(self, data):
        self.text.append(data)


def _parse(path):
    doc = _Doc()
    doc.feed(path.read_text())
    return doc, " ".join(doc.text)


def test_report_structure(table, drawn, tmp_path):
    figs = drawn[1]
    bad = table.iloc[:1].copy()
    bad["error"], bad["value"] = "ep0.pt: truncated file", np.nan
    ib = synthetic_table(peaks=(3,), turn=(4,), epochs=6, config="<b>ib$12</b>")
    ib = ib[ib["task"] != "target"]  # a configuration without a target task
    df = pd.concat([table, bad, ib], ignore_index=True)
    df.to_csv(tmp_path / "results.csv", index=False)
    path = report.write_report(df, tmp_path / "report.html", figs,
                               manifests={"ce-seed0": "model: pkg:make\nlayers: [fc1]\ndata: {source: 'digits:0-4', "
                                                      "target: 'digits:5-9'}"},
                               settings={"max_samples": 4096, "seed": 0})
    html_text = path.read_text()
    assert "<script" not in html_text and "http://" not in html_text and "https://" not in html_text
    doc, text = _parse(path)
    assert doc.sections[:4] == ["settings", "summary", "warnings", "failures"]
    assert {"figures", "data", "manifests", "software"} <= set(doc.sections)
    anchors = [h[1:] for h in doc.hrefs if h.startswith("#")]
    assert len(anchors) == len(doc.sections) and all(a in doc.ids for a in anchors)  # the TOC resolves
    assert len([s for s in doc.imgs if s.startswith("data:image/png;base64,")]) == len(figs)
    assert base64.b64decode(doc.imgs[0].split(",", 1)[1])[:4] == b"\x89PNG"
    # settings at the top: source and target from the manifest, the analysis settings, the estimators
    assert "digits:0-4" in text and "digits:5-9" in text and "max_samples" in text and "4096" in text
    assert "target linear probe accuracy [fraction]" in text
    # names escaped: the tag is text, not markup
    assert "<b>ib$12</b>" in text and "<b>ib$12</b>" not in html_text
    # no "peaked at none" for the run without a target
    assert "peaked at none" not in text and "no target task" in text
    assert "0.020 [" in text and "0.060 [" in text  # tradeoff.verdicts: ce falls by 0.02, ctc by 0.06
    assert "ep0.pt: truncated file" in text and "model: pkg:make" in text
    assert "torch" in text and "numpy" in text
    # the table: a relative link and an embedded copy that holds every row
    assert "results.csv" in doc.hrefs
    uri = [h for h in doc.hrefs if h.startswith("data:text/csv;base64,")][0]
    back = pd.read_csv(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert len(back) == len(df)
    assert "accuracies on fewer than 300 test samples" in text  # n = 100 in the synthetic table


def test_report_warnings():
    df = _saturated_table()
    probe = df["measure"] == "linear_probe_acc"
    df.loc[probe & (df["epoch"] < 3), "params"] = '{"l2": 10.0}'  # the strongest of the default grid
    warn = report.table_warnings(df)
    sat = [w for w in warn if w.startswith("Saturated")]
    assert len(sat) == 1 and "ce fc1 by binning: 12 of 12 at 6.64 bits (n = 100)" in sat[0]
    assert "kde" not in sat[0]
    edge = [w for w in warn if "L2 strength" in w]
    assert len(edge) == 1 and "strongest" in edge[0] and "12 of 24" in edge[0]
    clean = synthetic_table().assign(n=1000)
    assert report.table_warnings(clean) == []


def test_report_survives_a_yaml_alias_bomb_in_a_manifest(table, tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "layers: *i\n"
    path = report.write_report(table, tmp_path / "r.html", manifests={"ce-seed0": bomb})
    assert path.stat().st_size < 2_000_000  # the bomb is shown as text, never expanded


def test_report_uses_verdicts_when_the_library_has_them(table, tmp_path, monkeypatch):
    def verdicts(df):
        return pd.DataFrame([{"config": "ce", "layer": "fc1", "protocol": "linear_probe", "verdict": "over-compresses",
                              "onset": 4.0, "drop": 0.05, "drop_low": 0.01, "drop_high": 0.09, "source_change": 0.2,
                              "n_seeds": 2, "sentence": "fc1 & co: transfer fell"}])

    monkeypatch.setattr(tr, "verdicts", verdicts, raising=False)
    path = report.write_report(table, tmp_path / "r.html")
    doc, text = _parse(path)
    assert "over-compresses" in text and "0.050 [0.010, 0.090]" in text and "fc1 & co: transfer fell" in text
    assert "fc1 & co" not in path.read_text()  # escaped


def test_plot_command_redraws_from_csv(table, tmp_path):
    csv = tmp_path / "results.csv"
    table.to_csv(csv, index=False)
    out = tmp_path / "figs"
    assert main(["plot", str(csv), "--out", str(out)]) == 0
    assert {p.name for p in out.glob("*.png")} == {"information_plane.png", "tradeoff.png",
                                                   "compression_vs_transfer.png", "estimators.png"}
    assert (out / "report.html").exists()
    assert main(["plot", str(tmp_path / "nope.csv"), "--out", str(out)]) == 2


def test_landscape_and_supervision_figures_draw_names_literally(tmp_path, figures):
    import matplotlib.pyplot as plt

    from infodyn.landscape.plot import sharpness_vs_transfer
    from infodyn.supervision.plots import plot_cost_benefit, plot_learning

    rows = []
    for run in ("a$x$", "b$^$"):
        for ep in range(1, 5):
            base = dict(run=run, checkpoint=f"e{ep}.pt", epoch=ep, step=ep, task="source", error="")
            rows.append({**base, "layer": "model", "measure": "sharpness", "value": 1.0 + ep})
            rows.append({**base, "layer": "fc$1$", "measure": "linear_probe_acc", "task": "target",
                         "value": 0.5 + ep / 20})
    assert _is_png(sharpness_vs_transfer(pd.DataFrame(rows), tmp_path / "s.png"))
    learning = pd.DataFrame([{"model": "m$1$", "signal": s, "measure": "source_acc", "budget": b, "value": 0.5,
                              "seed": 0} for s in ("hard", "$oft$") for b in (10, 20)])
    curve = pd.DataFrame([{"model": "m$1$", "signal": s, "measure": "few$shot$", "cost_seconds": c, "value": 0.5,
                           "value_sd": 0.1, "best": c == 60} for s in ("hard", "$oft$") for c in (60, 120)])
    figs = [plot_learning(learning, measures=("source_acc",)), plot_cost_benefit(curve)]
    for fig in figs:
        fig.canvas.draw()  # unescaped, "b$^$" is a math-text error at draw time
    texts = [t for f in figures + figs for t in _texts(f)]
    shown = " ".join(s for _, s, _ in texts)
    for name in ("a$x$", "b$^$", "fc$1$", "m$1$", "$oft$", "few$shot$"):
        assert name in shown, name
    assert not [raw for raw, _, is_math in texts if "$" in raw and is_math and "mathdefault" not in raw]  # ticks
    for fig in figs:
        plt.close(fig)


def test_many_layers_wrap_instead_of_one_endless_row(tmp_path, figures):
    layers = tuple(f"block{i}" for i in range(9))
    df = synthetic_table(peaks=(3,), turn=(4,), epochs=4, layers=layers)
    plots.estimator_comparison(df, tmp_path / "e.png")
    fig = figures[0]
    gs = fig.axes[0].get_subplotspec().get_gridspec()
    assert gs.ncols == plots.MAX_COLS and gs.nrows == 4  # I(X;T): 6 + 3 panels, I(T;Y): 6 + 3
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert len(titles) == 18 and titles.count("ce, layer block8") == 2


def test_a_table_without_sample_counts_still_draws_and_reports(table, tmp_path):
    old = table.drop(columns=["n"])  # a CSV from before the n column: no saturation or sample-size notes
    figs = plots.plot_all(old, tmp_path)
    assert len(figs) == 4
    assert not plots.saturated(old).any()
    path = report.write_report(old, tmp_path / "r.html", figs)
    doc, text = _parse(path)
    assert "Warnings (0)" in text and "fewer than 300 test samples" not in text
