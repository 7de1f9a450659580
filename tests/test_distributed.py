"""infodyn.analyze on a real Dask distributed cluster (two worker processes on 127.0.0.1)."""
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from infodyn import analysis  # noqa: E402
from infodyn.cli import main  # noqa: E402
from infodyn.tradeoff import COLUMNS  # noqa: E402

from test_analysis_landscape import record_run  # noqa: E402

MEASURES = "binning,knn,rankme,source_acc,sharpness,weight_distance"
LAND = {"max_samples": 128, "iters": 40}
NO_TIME = [c for c in COLUMNS if c != "seconds"]


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, processes=True, host="127.0.0.1", threads_per_worker=1,
                      dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("druns")
    record_run(root, "tanh-seed0", seed=0)
    record_run(root, "tanh-seed1", seed=1)
    return root


@pytest.fixture(scope="module")
def local(runs):
    return analysis.analyze(runs, measures=MEASURES, out=None, progress=False, max_samples=500,
                            landscape_options=LAND)


def test_cluster_table_equals_local_value_for_value(runs, local, cluster, tmp_path):
    from distributed import Client

    with Client(cluster.scheduler_address) as client:
        df = analysis.analyze(runs, measures=MEASURES, out=tmp_path / "o", progress=False, max_samples=500,
                              landscape_options=LAND, scheduler=client)
        # the cluster had both worker processes
        assert len(client.scheduler_info()["workers"]) == 2
    assert (df["error"] == "").all()
    assert len(df) == len(local) > 0
    assert df[NO_TIME].equals(local[NO_TIME])
    # every job's file was written once, whole, by a worker:
    # 2 runs x 3 checkpoints x (2 layers x 3 layer measures + source_acc + 2 landscape measures)
    assert len(list((tmp_path / "o" / "units").rglob("*.json"))) == 2 * 3 * (2 * 3 + 1 + 2)
    assert not list((tmp_path / "o").rglob("*.tmp"))


def test_cli_scheduler_address(runs, local, cluster, tmp_path):
    import pandas as pd

    out = tmp_path / "cli"
    code = main(["analyze", str(runs), "--out", str(out), "--measures", "binning,knn,source_acc",
                 "--max-samples", "500", "--scheduler", cluster.scheduler_address, "--no-progress"])
    assert code == 0
    df = pd.read_csv(out / "results.csv")
    ref = local[local["measure"].isin(["I(X;T)", "I(T;Y)", "knn_acc", "source_acc"])].reset_index(drop=True)
    assert len(df) == len(ref)
    assert list(df["value"].round(12)) == list(ref["value"].round(12))


def test_bad_scheduler_argument_is_named(runs):
    with pytest.raises(ValueError, match="scheduler"):
        analysis.analyze(runs, measures="binning", out=None, progress=False, scheduler=8786)
