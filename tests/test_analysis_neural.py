"""`infodyn analyze --measures infonce`: the neural bounds get the inputs X for I(X;T)."""
import numpy as np

from infodyn import analysis

from test_analysis import make_run


def test_neural_information_plane_in_analyze(tmp_path):
    run, _ = make_run(tmp_path, "tanh-seed0", epochs=1, hidden=(6,), target=None)
    df = analysis.analyze(run, measures=["infonce"], out=tmp_path / "out", progress=False, max_samples=300,
                          plane_params={"infonce": {"max_steps": 60, "batch_size": 64}})
    plane = df[df["measure"].isin(["I(X;T)", "I(T;Y)"])]
    assert len(plane) == 2
    assert (plane["error"].fillna("") == "").all(), plane["error"].tolist()
    assert (plane["method"] == "infonce").all()
    assert np.isfinite(plane["value"]).all()
    # InfoNCE can never exceed log(batch size)
    assert (plane["value"] <= np.log(64) + 1e-6).all()
