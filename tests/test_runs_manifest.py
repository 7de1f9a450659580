"""The run manifest (infodyn.yaml), build_model, and `infodyn init`."""
import textwrap

import pytest
import torch
import yaml

from infodyn.cli import main
from infodyn.models import MLP
from infodyn.runs import (RunManifest, build_model, load_manifest, parse_manifest, resolve_layers,
                          write_manifest)

GOOD = """\
model: infodyn.models:mlp
model_kwargs: {in_dim: 12, hidden: [10, 7], num_classes: 2}
data:
  source: ib12bit
  target: "digits:5-9"
layers: [fc1, "fc*"]
checkpoints: "*.pt"
"""


def _write(tmp_path, text):
    (tmp_path / "infodyn.yaml").write_text(textwrap.dedent(text))
    return tmp_path


def test_load_good_manifest_and_build(tmp_path):
    m = load_manifest(_write(tmp_path, GOOD))
    assert isinstance(m, RunManifest)
    assert (m.model, m.data_source, m.data_target, m.layers, m.checkpoints) == (
        "infodyn.models:mlp", "ib12bit", "digits:5-9", ["fc1", "fc*"], "*.pt")
    assert m.model_kwargs == {"in_dim": 12, "hidden": [10, 7], "num_classes": 2}
    assert m.path == tmp_path / "infodyn.yaml" and m.name == tmp_path.name and m.pool == "auto"
    assert load_manifest(tmp_path / "infodyn.yaml") == m  # the file itself works too
    model = build_model(m)
    assert isinstance(model, MLP) and not model.training
    assert model(torch.zeros(3, 12)).shape == (3, 2)
    assert resolve_layers(model, m.layers) == ["fc1", "fc2"]


def test_unknown_keys_name_the_file_and_key(tmp_path):
    _write(tmp_path, GOOD + "learning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"infodyn.yaml: unknown key\(s\) \['learning_rate'\]"):
        load_manifest(tmp_path)
    _write(tmp_path, GOOD.replace("target:", "targt:"))
    with pytest.raises(ValueError, match=r"infodyn.yaml: unknown key\(s\) under 'data': \['targt'\]"):
        load_manifest(tmp_path)


@pytest.mark.parametrize("text, match", [
    ("model: infodyn.models:mlp\nlayers: [fc1]\n", "missing required key 'data'"),
    ("data: digits\nlayers: [fc1]\n", "missing required key 'model'"),
    ("model: infodyn.models:mlp\ndata: digits\n", "missing required key 'layers'"),
    ("model: m:f\ndata: digits\nlayers: 3\n", "'layers' must be a list"),
    ("model: m:f\ndata: digits\nlayers: [a]\nmodel_kwargs: [1, 2]\n", "'model_kwargs' must be a mapping"),
    ("model: m:f\ndata: {target: digits}\nlayers: [a]\n", "missing required key 'data.source'"),
    ("model: m:f\ndata: digits\nlayers: [a]\npool: maxi\n", "'pool' must be one of"),
    ("model: m:f\ndata: digits\nlayers: [a]\nseed: -1\n", "'seed' must be an integer >= 0"),
    ("model: m:f\ndata: digits\nlayers: [a]\nseed: '3'\n", "'seed' must be an integer >= 0"),
    ("model: m:f\ndata: digits\nlayers: [a]\nseed: true\n", "'seed' must be an integer >= 0"),
    ("model: m:f\ndata: digits\nlayers: [a]\nconfig: ''\n", "'config' must be a non-empty string"),
    ("- just\n- a list\n", "expected a mapping"),
    ("model: [unclosed\n", "not valid YAML"),
])
def test_bad_manifests(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_manifest(_write(tmp_path, text))


def test_no_manifest_says_how_to_write_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="infodyn init"):
        load_manifest(tmp_path)


def test_relative_npz_paths_resolve_against_the_manifest(tmp_path):
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    _write(run, "model: m:f\ndata: {source: ../../data/src.npz, target: /abs/t.npz}\nlayers: [x]\n")
    m = load_manifest(run)
    assert m.data_source == str((tmp_path / "data" / "src.npz").resolve())
    assert m.data_target == "/abs/t.npz"


def test_data_as_plain_string_and_layers_as_comma_string(tmp_path):
    m = load_manifest(_write(tmp_path, "model: m:f\ndata: digits:0-4\nlayers: fc1, fc2\n"))
    assert m.data_source == "digits:0-4" and m.data_target is None and m.layers == ["fc1", "fc2"]


def test_user_model_module_beside_the_manifest(tmp_path):
    (tmp_path / "h6_user_models_xyz.py").write_text(textwrap.dedent("""
        import torch
        def make(width=3):
            return torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU())
        not_callable = 5
        def not_a_module():
            return "nope"
    """))
    _write(tmp_path, "model: h6_user_models_xyz:make\nmodel_kwargs: {width: 7}\ndata: d\nlayers: ['0']\n")
    model = build_model(load_manifest(tmp_path))
    assert model[0].out_features == 7
    for spec, match in [("h6_user_models_xyz:missing", "has no attribute 'missing'"),
                        ("h6_user_models_xyz:not_callable", "is not callable"),
                        ("h6_user_models_xyz:not_a_module", "returned a str, not a torch.nn.Module"),
                        ("no_such_module_h6:make", "cannot import module 'no_such_module_h6'"),
                        ("justaname", "must look like")]:
        _write(tmp_path, f"model: {spec}\ndata: d\nlayers: [a]\n")
        with pytest.raises(ValueError, match=match):
            build_model(load_manifest(tmp_path))
    _write(tmp_path, "model: h6_user_models_xyz:make\nmodel_kwargs: {depth: 2}\ndata: d\nlayers: [a]\n")
    with pytest.raises(ValueError, match="check model_kwargs"):
        build_model(load_manifest(tmp_path))


def test_write_manifest_never_silently_overwrites(tmp_path):
    m = {"model": "infodyn.models:ib12bit_net", "data": {"source": "ib12bit"}, "layers": ["fc1"]}
    p = write_manifest(tmp_path, m)
    assert yaml.safe_load(p.read_text()) == m
    assert write_manifest(tmp_path, dict(m)) == p  # identical content: fine
    changed = {**m, "layers": ["fc2"]}
    with pytest.raises(ValueError, match="already exists with different content"):
        write_manifest(tmp_path, changed)
    assert yaml.safe_load(p.read_text()) == m
    write_manifest(tmp_path, changed, overwrite=True)
    assert load_manifest(tmp_path).layers == ["fc2"]
    with pytest.raises(ValueError, match="unknown key"):
        write_manifest(tmp_path, {**m, "lr": 1}, overwrite=True)


def test_cli_init_writes_a_loadable_manifest(tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(["init", str(run), "--model", "infodyn.models:mlp", "--model-kwargs",
               "{in_dim: 64, hidden: [16, 8], num_classes: 10}", "--source", "digits:0-4",
               "--target", "digits:5-9", "--layers", "fc1,fc2", "out", "--checkpoints", "*.pt"])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    m = load_manifest(run)
    assert m.layers == ["fc1", "fc2", "out"] and m.data_target == "digits:5-9"
    assert m.model_kwargs == {"in_dim": 64, "hidden": [16, 8], "num_classes": 10}
    assert resolve_layers(build_model(m), m.layers) == ["fc1", "fc2", "out"]
    # a second, different init is refused (exit 2) unless --force
    args = ["init", str(run), "--model", "infodyn.models:ib12bit_net", "--source", "ib12bit"]
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    assert load_manifest(run).layers == ["fc1", "fc2", "fc3", "fc4", "fc5", "out"]  # default layers
    assert main(args + ["--force", "--seed", "7", "--config", "wide"]) == 0
    m = load_manifest(run)
    assert (m.seed, m.config) == (7, "wide")


def test_cli_init_checks_layer_names(tmp_path, capsys):
    rc = main(["init", str(tmp_path / "r"), "--model", "infodyn.models:ib12bit_net",
               "--source", "ib12bit", "--layers", "fc7"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "layer 'fc7' does not exist" in err and "fc1" in err
    assert not (tmp_path / "r" / "infodyn.yaml").exists()
    assert main(["init", str(tmp_path / "r"), "--model", "nonexistent_pkg_h6:f", "--source",
                 "ib12bit", "--layers", "a", "--no-check"]) == 0


def test_cli_init_npz_path_is_written_relative_to_the_run(tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "mine.npz", x=np.zeros((3, 2)), y=np.zeros(3))
    assert main(["init", "runs/a", "--model", "m:f", "--source", "mine.npz", "--layers", "l",
                 "--no-check"]) == 0
    raw = yaml.safe_load((tmp_path / "runs" / "a" / "infodyn.yaml").read_text())
    assert raw["data"]["source"] == "../../mine.npz"
    assert load_manifest(tmp_path / "runs" / "a").data_source == str((tmp_path / "mine.npz").resolve())


def test_parse_manifest_accepts_a_dict():
    m = parse_manifest({"model": "a:b", "data": "digits", "layers": ["x"]}, "/tmp/x/infodyn.yaml")
    assert m.name == "x" and m.layers == ["x"]


def test_cli_init_list_layers_writes_nothing(tmp_path, capsys):
    assert main(["init", str(tmp_path / "r"), "--model", "infodyn.models:small_cnn", "--source",
                 "digits", "--list-layers"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in out]
    assert names[:3] == ["conv1", "conv1.conv", "conv1.act"] and "out" in names
    assert "Conv2d" in out[1] and "parameters" in out[1]
    assert not (tmp_path / "r").exists()
