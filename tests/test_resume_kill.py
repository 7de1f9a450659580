"""A real crash: `infodyn analyze` killed with SIGKILL mid-way, started again, gives the table of an
uninterrupted run and recomputes only the units that were missing; damaged unit files are redone."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from infodyn import analysis
from infodyn.cli import main
from infodyn.tradeoff import COLUMNS

from test_analysis_landscape import record_run

MEASURES = "binning,rankme,source_acc"
N_CKPT = 6
N_UNITS = N_CKPT * (2 * 2 + 1)  # cache files: 2 layers x (binning, rankme) + the head accuracy per checkpoint

# The run's model sleeps in forward, so each unit lasts long enough to be killed in the middle.
SLOW_MODEL = '''
import time
from infodyn.models import mlp

def slow_mlp(**kw):
    m = mlp(**kw)
    base = type(m)

    class Slow(base):
        def forward(self, x):
            time.sleep(0.02)
            return base.forward(self, x)

    m.__class__ = Slow
    return m
'''


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = record_run(tmp_path_factory.mktemp("kill"), epochs=N_CKPT)
    (d / "models.py").write_text(SLOW_MODEL)
    man = yaml.safe_load((d / "infodyn.yaml").read_text())
    man["model"] = "models:slow_mlp"
    (d / "infodyn.yaml").write_text(yaml.safe_dump(man))
    return d


def args(run_dir, out):
    return ["analyze", str(run_dir), "--out", str(out), "--measures", MEASURES, "--max-samples", "600",
            "--no-progress"]


@pytest.fixture(scope="module")
def reference(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    df = analysis.analyze(run_dir, measures=MEASURES, out=out, max_samples=600, progress=False)
    assert (df["error"] == "").all() and len(df) == N_CKPT * 7
    return pd.read_csv(out / "results.csv")


def unit_files(out):
    return {p: p.stat().st_mtime_ns for p in (Path(out) / "units").rglob("*.json")} if (Path(out) / "units").is_dir() else {}


def start_and_kill(run_dir, out, at_least):
    """Starts the CLI in a subprocess and SIGKILLs it once ``at_least`` unit files exist."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "infodyn.cli"] + args(run_dir, out), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    try:
        while len(unit_files(out)) < at_least:
            assert proc.poll() is None, f"finished or failed before the kill: {proc.stderr.read().decode()[-2000:]}"
            assert time.time() - t0 < 120, "no unit finished within 2 minutes"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    return unit_files(out)


def same_table(a: pd.DataFrame, b: pd.DataFrame):
    cols = [c for c in COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True),
                                  check_exact=True)


def test_killed_twice_then_resumed_equals_uninterrupted(run_dir, reference, tmp_path):
    out = tmp_path / "out"
    first = start_and_kill(run_dir, out, 3)
    assert 3 <= len(first) < N_UNITS
    assert not (out / "results.csv").exists()
    second = start_and_kill(run_dir, out, len(first) + 3)
    assert len(second) < N_UNITS
    for p, mtime in first.items():  # the second start did not redo what the first finished
        assert second[p] == mtime, p
    assert main(args(run_dir, out)) == 0
    final = unit_files(out)
    assert len(final) == N_UNITS
    for p, mtime in second.items():
        assert final[p] == mtime, f"{p} was recomputed"
    same_table(pd.read_csv(out / "results.csv"), reference)


def test_damaged_unit_files_are_recomputed_never_read(run_dir, reference, tmp_path):
    out = tmp_path / "out"
    analysis.analyze(run_dir, measures=MEASURES, out=out, max_samples=600, progress=False)
    files = sorted(unit_files(out))
    truncated, tampered, emptied = files[0], files[1], files[2]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    blob = json.loads(tampered.read_text())
    blob["rows"][0]["value"] = 123.0  # valid JSON, but the checksum no longer matches
    tampered.write_text(json.dumps(blob))
    emptied.write_bytes(b"")
    leftover = out / "units" / ".stale.json.abc.tmp"  # what a killed atomic write leaves behind
    leftover.write_text("{half")
    time.sleep(0.01)
    before = unit_files(out)
    analysis.analyze(run_dir, measures=MEASURES, out=out, max_samples=600, progress=False)
    after = unit_files(out)
    for p in files:
        if p in (truncated, tampered, emptied):
            assert after[p] != before[p], f"{p.name} was read instead of recomputed"
            assert json.loads(p.read_text())["rows"]
        else:
            assert after[p] == before[p]
    same_table(pd.read_csv(out / "results.csv"), reference)
