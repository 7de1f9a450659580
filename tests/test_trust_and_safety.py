"""Code from a run folder, trusted checkpoints and absurd manifests (issue 17, items 11-13).

Nothing here ever runs a command: every payload is a harmless marker-file write or a spy, and
each test asserts the refusal came before any call.
"""
import os
import sys
import textwrap
import time
import warnings

import pytest
import torch

from infodyn.runs import build_model, load_manifest
from infodyn.runs.load import CheckpointError, load_checkpoint


def manifest(folder, model, kwargs=None, extra=""):
    text = f"model: {model}\ndata: digits\nlayers: [fc1]\n"
    if kwargs is not None:
        text += f"model_kwargs: {kwargs}\n"
    (folder / "infodyn.yaml").write_text(text + extra)
    return folder


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------------------------------------
# item 11: a run's own modules never shadow or evict installed ones


@pytest.fixture
def installed_fakelib(tmp_path, monkeypatch):
    """A library 'g17fakelib' importable from site/ (standing in for site-packages)."""
    site = tmp_path / "site"
    write(site / "g17fakelib" / "__init__.py", """
        import torch
        def create_model(width=3):
            return torch.nn.Linear(2, width)
    """)
    monkeypatch.syspath_prepend(str(site))
    for name in [n for n in sys.modules if n.startswith("g17fakelib")]:
        monkeypatch.delitem(sys.modules, name)
    yield site
    for name in [n for n in sys.modules if n.startswith("g17fakelib")]:
        del sys.modules[name]


@pytest.mark.parametrize("imported_before", [True, False])
def test_run_folder_cannot_shadow_or_evict_an_installed_library(tmp_path, installed_fakelib, imported_before):
    """Issue 17 item 11: `model: fakelib:create_model` ran fakelib/ from the run folder (the
    folder went first on sys.path) and evicted the imported fakelib from sys.modules."""
    import importlib

    run = tmp_path / "run"
    marker = tmp_path / "SHADOW_RAN"
    write(run / "g17fakelib" / "__init__.py", f"""
        open({str(marker)!r}, "w").close()
        import torch
        def create_model(width=3):
            return torch.nn.Linear(2, 99)
    """)
    manifest(run, "g17fakelib:create_model", "{width: 5}")
    before = importlib.import_module("g17fakelib") if imported_before else None
    path_before = list(sys.path)
    with pytest.warns(UserWarning, match=r"'g17fakelib' is installed .*the run folder's .*g17fakelib is ignored"):
        model = build_model(load_manifest(run))
    assert model.out_features == 5  # the installed library's factory
    assert not marker.exists()  # the folder's package never ran
    assert sys.path == path_before
    if before is not None:
        assert sys.modules["g17fakelib"] is before  # not evicted
    assert str(installed_fakelib) in sys.modules["g17fakelib"].__file__


def test_a_runs_own_module_is_imported_from_its_file_under_a_private_name(tmp_path, capsys):
    run = tmp_path / "run"
    write(run / "g17models.py", """
        import sys
        from .g17helpers import WIDTH          # siblings import relatively
        SYS_PATH = list(sys.path)
        import torch
        def make(**kw):
            print("FACTORY CALLED", file=sys.stderr)
            return torch.nn.Linear(2, WIDTH)
    """)
    write(run / "g17helpers.py", "WIDTH = 4\n")
    manifest(run, "g17models:make")
    path_before = list(sys.path)
    model = build_model(load_manifest(run))
    assert model.out_features == 4
    assert sys.path == path_before and "g17models" not in sys.modules and "g17helpers" not in sys.modules
    private = [n for n in sys.modules if n.startswith("infodyn_run_") and n.endswith(".g17models")]
    assert len(private) == 1
    assert str(run.resolve()) not in sys.modules[private[0]].SYS_PATH  # nothing of the folder on sys.path
    assert sys.modules[private[0]].__file__ == str((run / "g17models.py").resolve())
    assert not (run / "__pycache__").exists()  # nothing written into the run folder
    err = capsys.readouterr().err
    said = err.index("running model factory 'g17models:make'")
    assert str((run / "g17models.py").resolve()) in err[said:] and said < err.index("FACTORY CALLED")


def test_an_edited_module_is_imported_afresh_and_two_runs_keep_their_own(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, width in [(a, 3), (b, 6)]:
        write(folder / "models.py", f"import torch\ndef make():\n    return torch.nn.Linear(2, {width})\n")
        manifest(folder, "models:make")
    assert build_model(load_manifest(a)).out_features == 3
    assert build_model(load_manifest(b)).out_features == 6
    assert build_model(load_manifest(a)).out_features == 3
    write(a / "models.py", "import torch\ndef make():\n    return torch.nn.Linear(2, 8)\n")  # edited
    assert build_model(load_manifest(a)).out_features == 8


def test_a_package_in_the_run_folder_with_submodules(tmp_path):
    run = tmp_path / "run"
    write(run / "g17pkg" / "__init__.py", "")
    write(run / "g17pkg" / "nets.py", """
        import torch
        from . import sizes
        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = torch.nn.Linear(2, sizes.W)
            @classmethod
            def build(cls, **kw):
                return cls()
    """)
    write(run / "g17pkg" / "sizes.py", "W = 7\n")
    for spec in ("g17pkg.nets:Net", "g17pkg.nets:Net.build"):  # a Module class; a classmethod
        manifest(run, spec)
        assert build_model(load_manifest(run)).fc1.out_features == 7
    assert "g17pkg" not in sys.modules


# ---------------------------------------------------------------------------------------------
# item 12: callables that are not model factories are refused before they are called


@pytest.mark.parametrize("spec, kwargs", [
    ("os:system", "{command: 'touch MARKER'}"),
    ("posix:system", "{command: 'touch MARKER'}"),
    ("subprocess:run", "{args: [touch, MARKER]}"),
    ("subprocess:Popen", "{args: [touch, MARKER]}"),
    ("builtins:eval", "{source: 'open(\"MARKER\", \"w\")'}"),
    ("builtins:exec", "{source: 'open(\"MARKER\", \"w\")'}"),
    ("builtins:open", "{file: MARKER, mode: w}"),
    ("shutil:copy", "{src: infodyn.yaml, dst: MARKER}"),
    ("pathlib:Path.touch", "{self: MARKER}"),
    ("importlib:import_module", "{name: antigravity}"),
    ("pickle:loads", "{data: x}"),
    ("torch:load", "{f: x.pt, weights_only: false}"),
    ("torch.hub:load", "{repo_or_dir: x, model: y}"),
    ("numpy:load", "{file: x.npy, allow_pickle: true}"),
    ("pty:spawn", "{argv: [touch, MARKER]}"),
    ("socket:socket", "{}"),
    ("collections:OrderedDict", "{}"),          # a class, but not an nn.Module
    ("operator:methodcaller", "{name: x}"),
])
def test_callables_that_are_not_model_factories_are_refused_before_the_call(tmp_path, monkeypatch, spec, kwargs):
    """Issue 17 item 12: `model: os:system` with `model_kwargs: {command: ...}` ran the command."""
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    manifest(run, spec, kwargs)
    with pytest.raises(ValueError, match=r"refused before running it"):
        build_model(load_manifest(run))
    assert not (run / "MARKER").exists()


def test_reexported_dangerous_callables_in_a_runs_module_are_refused(tmp_path, monkeypatch):
    """The run folder's module re-exports os.system / subprocess.run / eval under innocent names:
    refused by what the object is (a builtin, or defined in subprocess), before any call."""
    run = tmp_path / "run"
    write(run / "g17evil.py", """
        import os, subprocess, functools
        make_builtin = os.system
        make_sub = subprocess.run
        make_eval = eval
        make_partial = functools.partial(subprocess.run, ["true"])
        class NotAModel:
            def __init__(self, **kw):
                raise AssertionError("must not be called")
    """)
    calls = []
    monkeypatch.setattr(subprocess_module(), "run", lambda *a, **k: calls.append(a))
    for name in ("make_builtin", "make_eval", "make_partial", "NotAModel"):
        manifest(run, f"g17evil:{name}", "{command: 'touch MARKER'}")
        with pytest.raises(ValueError, match=r"g17evil:\w+' refused before running it"):
            build_model(load_manifest(run))
    assert not (run / "MARKER").exists() and calls == []


def test_import_callable_refuses_dangerous_origins_for_data_callables_too(tmp_path):
    """Data set and transform callables also come through import_callable: a builtin such as
    torch.tanh is fine there, os.system under another name is not."""
    from infodyn.runs.manifest import import_callable

    write(tmp_path / "g17data.py", "import os\nimport torch\nload = os.system\nsquash = torch.tanh\n")
    assert import_callable("g17data:squash", search_dir=tmp_path) is torch.tanh
    with pytest.raises(ValueError, match=r"'g17data:load' refused before running it: it is defined in 'posix'"):
        import_callable("g17data:load", search_dir=tmp_path, where="data")
    with pytest.raises(ValueError, match=r"refused before running it: module 'subprocess'"):
        import_callable("subprocess:check_output", search_dir=tmp_path)


def subprocess_module():
    import subprocess

    return subprocess


def test_the_refusal_message_names_the_file_and_says_what_is_allowed(tmp_path):
    manifest(tmp_path, "os:system", "{command: 'echo hi'}")
    with pytest.raises(ValueError) as info:
        build_model(load_manifest(tmp_path))
    msg = str(info.value)
    assert str(tmp_path / "infodyn.yaml") in msg and "'os:system'" in msg
    assert "torch.nn.Module subclass, or a Python function" in msg and len(msg) < 500


# ---------------------------------------------------------------------------------------------
# item 12: --trust-pickle still refuses well-known code-execution globals


def _crafted_checkpoint(path, module, name):
    """A torch zip checkpoint whose pickle is {"evil": MODULE.NAME("touch MARKER")}, written
    opcode by opcode (GLOBAL, then REDUCE), so the file names exactly MODULE.NAME."""
    import struct
    import zipfile

    torch.save({"w": 1}, path)  # the archive's other records; no tensors are needed
    with zipfile.ZipFile(path) as z:
        entries = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    arg = b"touch MARKER"
    pkl = (b"\x80\x02}" + b"X" + struct.pack("<I", 4) + b"evil"
           + b"c" + module.encode() + b"\n" + name.encode() + b"\n"
           + b"X" + struct.pack("<I", len(arg)) + arg + b"\x85R" + b"s.")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for fn, data in entries:
            z.writestr(fn, pkl if fn.endswith("/data.pkl") else data)
    named = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    assert len(named) == 1 and named[0].endswith(f".{name}")  # __builtin__ is read as builtins
    return path, named[0]


@pytest.mark.parametrize("module, name", [
    ("os", "system"), ("posix", "system"), ("nt", "system"), ("subprocess", "check_output"),
    ("subprocess", "Popen"), ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"),
    ("builtins", "__import__"), ("__builtin__", "compile"), ("commands", "getoutput"),
    ("pty", "spawn"), ("torch", "load"), ("operator", "methodcaller"), ("runpy", "run_path"),
])
def test_trusted_loading_refuses_code_execution_globals(tmp_path, monkeypatch, module, name):
    """Issue 17 item 12: trust=True (--trust-pickle) allowlisted every global a file named.
    The refusal comes before anything is imported or called: import_module is a spy here."""
    import importlib

    path, named = _crafted_checkpoint(tmp_path / "evil.pt", module, name)
    imported = []
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda n, *a: imported.append(n) or real(n, *a))
    with pytest.raises(CheckpointError, match=rf"evil.pt: refused even with trust=True: the file names "
                                              rf"{named}, which runs commands"):
        load_checkpoint(path, trust=True)
    assert imported == [] and not (tmp_path / "MARKER").exists()


def test_trusted_loading_refuses_a_real_pickled_os_system_payload(tmp_path):
    """What an attacker's torch.save writes: os.system pickled by reference (as posix.system)."""

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "MARKER"),))

    torch.save({"w": torch.zeros(2), "evil": Payload()}, tmp_path / "real.pt")
    with pytest.raises(CheckpointError, match=r"refused even with trust=True: the file names posix.system"):
        load_checkpoint(tmp_path / "real.pt", trust=True)
    assert not (tmp_path / "MARKER").exists()


def test_trusted_loading_refuses_a_global_that_resolves_to_a_dangerous_object(tmp_path, monkeypatch):
    """The file names an innocent-looking g17alias.run, which the module defines as os.system
    (here a spy dressed as posix.system): refused by what the name resolves to."""
    site = tmp_path / "site"
    write(site / "g17alias.py", "from os import system as run\n")
    monkeypatch.syspath_prepend(str(site))
    import importlib

    path, _ = _crafted_checkpoint(tmp_path / "alias.pt", "g17alias", "run")
    calls = []

    def spy(*a, **k):
        calls.append(a)

    spy.__module__, spy.__qualname__ = "posix", "system"
    try:
        monkeypatch.setattr(importlib.import_module("g17alias"), "run", spy)
        with pytest.raises(CheckpointError, match=r"the file names g17alias.run \(it is posix.system\)"):
            load_checkpoint(path, trust=True)
    finally:
        sys.modules.pop("g17alias", None)
    assert calls == [] and not (tmp_path / "MARKER").exists()


def test_trusted_loading_still_loads_a_benign_custom_class(tmp_path, monkeypatch):
    site = tmp_path / "site"
    write(site / "g17meta.py", """
        class RunInfo:
            def __init__(self, epoch):
                self.epoch = epoch
    """)
    monkeypatch.syspath_prepend(str(site))
    import g17meta

    torch.save({"w": torch.ones(3), "info": g17meta.RunInfo(4)}, tmp_path / "ok.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "ok.pt")  # not trusted: refused as before
    state = load_checkpoint(tmp_path / "ok.pt", trust=True)
    assert torch.equal(state["w"], torch.ones(3))


# ---------------------------------------------------------------------------------------------
# item 13: absurd manifests are refused early, and errors echo little

BOMB = (
    "model: infodyn.models:mlp\ndata: digits\nlayers: [&a [fc1,fc1,fc1,fc1,fc1,fc1,fc1,fc1,fc1], "
    + ", ".join(f"&{b} [" + ",".join([f"*{a}"] * 9) + "]" for a, b in zip("abcdefgh", "bcdefghi")) + "]\n"
)


def test_yaml_alias_bomb_is_refused_in_under_a_second_with_a_short_message(tmp_path):
    """Issue 17 item 13: a 600-byte alias bomb in `layers` took 44 s and a 226 MB message."""
    assert len(BOMB) < 700
    (tmp_path / "infodyn.yaml").write_text(BOMB)
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"infodyn.yaml: not valid YAML: more than 100,000 values") as info:
        load_manifest(tmp_path)
    assert time.perf_counter() - t < 1.0 and len(str(info.value)) < 600


@pytest.mark.parametrize("text, match", [
    ("model: infodyn.models:mlp\ndata: digits\nlayers: &a [fc1, *a]\n", "recursive alias"),
    ("model: infodyn.models:mlp\ndata: digits\nlayers: [fc1]\nk: &k {a: 1, b: 2}\n"
     + "".join(f"m{i}: &m{i} {{<<: [*{'k' if i == 0 else f'm{i - 1}'}], x{i}: [{', '.join(['*k'] * 40)}]}}\n"
               for i in range(40)), "more than 100,000 values"),  # merge keys multiply too
    ("model: m:f\ndata: digits\nlayers: " + "[" * 2000 + "]" * 2000 + "\n", "nested too deeply|not valid YAML"),
])
def test_other_absurd_yaml_is_refused_quickly(tmp_path, text, match):
    (tmp_path / "infodyn.yaml").write_text(text)
    t = time.perf_counter()
    with pytest.raises(ValueError, match=match) as info:
        load_manifest(tmp_path)
    assert time.perf_counter() - t < 2.0 and len(str(info.value)) < 800


def test_oversized_manifest_is_refused_before_parsing(tmp_path):
    (tmp_path / "infodyn.yaml").write_text("model: m:f\ndata: digits\nlayers: [a]\n# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ValueError, match=r"too large for a run manifest"):
        load_manifest(tmp_path)


def test_error_messages_echo_at_most_500_characters_of_a_value(tmp_path):
    many = "[" + ", ".join(["[x]"] * 600) + "]"
    for text in (f"model: m:f\ndata: digits\nlayers: {many}\n",
                 f"model: m:f\ndata: digits\nlayers: [a]\nname: {many}\n",
                 f"model: m:f\ndata: digits\nlayers: [a]\nseed: -{'9' * 3000}\n",
                 f"model: m:f\ndata: digits\nlayers: [a]\n" + "".join(f"bad{i}: 1\n" for i in range(300))):
        (tmp_path / "infodyn.yaml").write_text(text)
        with pytest.raises(ValueError) as info:
            load_manifest(tmp_path)
        assert len(str(info.value)) < 1000 and "..." in str(info.value)
    (tmp_path / "infodyn.yaml").write_text("model: m:f\ndata: digits\nlayers: [" + ", ".join(["a"] * 10001) + "]\n")
    with pytest.raises(ValueError, match=r"'layers' lists 10,001 names \(limit 10,000\)"):
        load_manifest(tmp_path)


@pytest.mark.parametrize("pattern", ["../*.pt", "ckpts/../../*.pt", "a/..", "..", "/etc/*.pt",
                                     "~/runs/*.pt", "..\\\\*.pt", "C:/x/*.pt"])
def test_checkpoint_patterns_outside_the_run_folder_are_refused(tmp_path, pattern):
    """Issue 17 item 13: `checkpoints: '../*.pt'` reached outside the run folder."""
    (tmp_path / "infodyn.yaml").write_text(f"model: m:f\ndata: digits\nlayers: [a]\ncheckpoints: '{pattern}'\n")
    with pytest.raises(ValueError, match=r"'checkpoints' must be a glob inside the run folder"):
        load_manifest(tmp_path)


@pytest.mark.parametrize("pattern", ["*.pt", "ckpts/epoch*.pt", "a..b/*.pt", "**/*.ckpt"])
def test_checkpoint_patterns_inside_the_run_folder_are_fine(tmp_path, pattern):
    (tmp_path / "infodyn.yaml").write_text(f"model: m:f\ndata: digits\nlayers: [a]\ncheckpoints: '{pattern}'\n")
    assert load_manifest(tmp_path).checkpoints == pattern


def test_benign_anchors_still_load(tmp_path):
    (tmp_path / "infodyn.yaml").write_text(
        "model: infodyn.models:mlp\nmodel_kwargs: {in_dim: 4, hidden: &h [3, 3], num_classes: 2}\n"
        "data: digits\nlayers: [fc1]\nname: &n run-a\nconfig: *n\n")
    m = load_manifest(tmp_path)
    assert m.model_kwargs["hidden"] == [3, 3] and m.config == "run-a"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # infodyn's own factory: no warning
        weights = {k: tuple(v.shape) for k, v in build_model(m).state_dict().items()}
    assert (3, 4) in weights.values()
