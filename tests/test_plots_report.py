"""Figures and the HTML report drawn from a synthetic results table; `infodyn plot`."""
import base64
import re

import numpy as np
import pandas as pd
import pytest

from infodyn import plots, report
from infodyn.cli import main
from test_tradeoff import synthetic_table


@pytest.fixture(scope="module")
def table():
    return pd.concat([synthetic_table(peaks=(3, 4), turn=(4, 5), epochs=6),
                      synthetic_table(peaks=(2, 2), turn=(3, 3), epochs=6, config="ctc")], ignore_index=True)


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_all_writes_every_figure(table, tmp_path):
    figs = plots.plot_all(table, tmp_path)
    assert set(figs) == {"information_plane", "tradeoff", "compression_vs_transfer", "estimators"}
    assert all(_is_png(p) and p.stat().st_size > 5000 for p in figs.values())
    assert not list(tmp_path.glob(".*.tmp"))


def test_axes_carry_units(table, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    labels = []
    real_close = plt.close

    def grab(fig=None):
        if fig is not None and hasattr(fig, "axes"):
            labels.extend(ax.get_xlabel() + "|" + ax.get_ylabel() for ax in fig.axes if ax.get_visible())
        return real_close(fig)

    monkeypatch.setattr(plt, "close", grab)
    plots.information_plane(table, tmp_path / "a.png")
    plots.estimator_comparison(table, tmp_path / "b.png")
    plots.tradeoff_curves(table, tmp_path / "c.png")
    assert "I(X;T) [bits]|I(T;Y) [bits]" in labels  # the information plane
    assert "epoch|I(T;Y) [bits]" in labels  # the estimator comparison
    assert "epoch|accuracy [fraction]" in labels  # the trade-off curves
    for pair in labels:  # colour bars aside, every axis names its unit (time is in epochs here)
        x, y = pair.split("|")
        if x:  # colour bars have only a y label ("epoch")
            assert (x == "epoch" or "[" in x) and "[" in y, pair


def test_figures_skip_what_the_table_lacks(table, tmp_path):
    only_acc = table[table["measure"].isin(["source_acc", "linear_probe_acc"])]
    figs = plots.plot_all(only_acc, tmp_path)
    assert set(figs) == {"tradeoff"}
    one_method = table[table["method"] != "kde"]
    assert plots.estimator_comparison(one_method, tmp_path / "e.png") is None


def test_report_is_self_contained(table, tmp_path):
    figs = plots.plot_all(table, tmp_path)
    bad = table.iloc[:1].copy()
    bad["error"], bad["value"] = "ep0.pt: truncated file", np.nan
    path = report.write_report(pd.concat([table, bad]), tmp_path / "report.html", figs,
                               manifests={"ce-seed0": "model: pkg:make\nlayers: [fc1]"})
    text = path.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(imgs) == len(figs)
    assert base64.b64decode(imgs[0])[:4] == b"\x89PNG"
    assert "ep0.pt: truncated file" in text and "Failures" in text
    assert "model: pkg:make" in text
    assert "torch" in text and "numpy" in text
    assert "transfer peaked at" in text


def test_plot_command_redraws_from_csv(table, tmp_path):
    csv = tmp_path / "results.csv"
    table.to_csv(csv, index=False)
    out = tmp_path / "figs"
    assert main(["plot", str(csv), "--out", str(out)]) == 0
    assert {p.name for p in out.glob("*.png")} == {"information_plane.png", "tradeoff.png",
                                                   "compression_vs_transfer.png", "estimators.png"}
    assert (out / "report.html").exists()
    assert main(["plot", str(tmp_path / "nope.csv"), "--out", str(out)]) == 2
