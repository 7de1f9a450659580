"""Real-size analysis: `infodyn analyze` against the sum of its irreducible parts (issue 18).

Run:  .venv/bin/python benchmarks/analyze_scale.py            # CPU sizes (about 10 min on 2 cores)
      .venv/bin/python benchmarks/analyze_scale.py --gpu      # full sizes on CUDA (benchmarks/gpu_suite.py)
Writes benchmarks/results/analyze_scale[_gpu].md and prints it.

Workload: a ResNet-18-shaped network (`infodyn.models:resnet18`, written without torchvision; the
CPU run uses width 8, the GPU run the real width 64), synthetic 3x32x32 inputs with 10 labels
(source) and 10 other labels (target) saved as .npz files, C checkpoints (the weights perturbed
between checkpoints), layers layer1..layer4 (conv maps, average-pooled) + pool (penultimate),
measures kde, linear_probe, knn, rankme, overcompression, `max_samples` 1000.

Each configuration runs twice, each in a fresh process, one torch thread:
* `analyze`: `infodyn.analyze(run, out=fresh folder)`, timed (CPU seconds of the process, and
  wall), with the process's peak RSS;
* `parts`: the irreducible work done by hand with the same library calls: per checkpoint one
  load and one forward pass over the source and target rows with hooks on every layer
  (`infodyn.runs.extract_features`), then every measure's computation on those features
  (the registry's own `compute`), each part timed separately.
The ratio analyze / (forward + measures) is the engine's overhead (target <= 1.25), and
analyze - measures over the number of layers shows that the data go through the network once per
checkpoint, not once per layer.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MEASURES = ["kde", "linear_probe", "knn", "rankme", "overcompression"]
ALL_LAYERS = ["layer1", "layer2", "layer3", "layer4", "pool"]


def make_run(root: Path, n: int, ckpts: int, width: int, layers, seed: int = 0) -> Path:
    """A run folder: C checkpoints of resnet18(width), source/target .npz of n samples each."""
    import torch
    import yaml

    from infodyn.models import resnet18

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    protos = rng.normal(size=(20, 3, 32, 32)).astype(np.float32)
    for name, classes in (("source", range(10)), ("target", range(10, 20))):
        y = rng.integers(0, 10, n)
        x = protos[np.array(list(classes))[y]] * 0.5 + rng.normal(size=(n, 3, 32, 32)).astype(np.float32)
        np.savez(root / f"{name}.npz", x=x.astype(np.float32), y=y)
    torch.manual_seed(seed)
    model = resnet18(10, 3, width)
    for c in range(ckpts):
        torch.save({"state_dict": model.state_dict(), "epoch": c}, root / f"epoch{c:03d}.pt")
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * p.std().nan_to_num(0.0) * torch.randn_like(p))
    (root / "infodyn.yaml").write_text(yaml.safe_dump({
        "model": "infodyn.models:resnet18", "model_kwargs": {"num_classes": 10, "in_channels": 3, "width": width},
        "data": {"source": "source.npz", "target": "target.npz"}, "layers": list(layers)}))
    return root


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_analyze(run: Path, device: str, batch: int) -> dict:
    import torch

    from infodyn import analyze

    torch.set_num_threads(1)
    import numba  # noqa: F401  (the libraries analyze loads, so that start_rss is the floor)
    import scipy.stats  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    c0, w0 = cpu_seconds(), time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        df = analyze(run, measures=MEASURES, out=Path(out) / "o", device=device, max_samples=1000,
                     batch_size=batch, progress=False)
    assert (df["error"] == "").all(), df.loc[df["error"] != "", "error"].unique()[:3]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"cpu": cpu_seconds() - c0, "wall": time.perf_counter() - w0,
            "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "start_rss_mib": start_rss,
            "rows": len(df)}


def child_parts(run: Path, device: str, batch: int) -> dict:
    import torch

    from infodyn.analysis import execute, measures as registry
    from infodyn.analysis.measures import DataInputs, LayerInputs
    from infodyn.runs import apply_state, build_model, extract_features, load_checkpoint, load_manifest, discover

    torch.set_num_threads(1)
    man = load_manifest(run)
    src, tgt = execute.dataset(man.data_source, 0), execute.dataset(man.data_target, 0)
    xs, ys = src.all()
    xt, yt = tgt.all()
    plane = execute.subsample(len(ys), 1000, 0)
    fs, ft = execute.folds(src, 0)[0], execute.folds(tgt, 0)[0]
    t = {"forward": 0.0, "forward_wall": 0.0, "measures": 0.0, "measures_wall": 0.0}
    for ck in discover(run):
        c0, w0 = cpu_seconds(), time.perf_counter()
        model = build_model(man)
        apply_state(model, load_checkpoint(ck.path))
        f_src = extract_features(model, xs, man.layers, batch_size=batch, device=device, pool="avg")
        f_tgt = extract_features(model, xt, man.layers, batch_size=batch, device=device, pool="avg")
        t["forward"] += cpu_seconds() - c0
        t["forward_wall"] += time.perf_counter() - w0
        c0, w0 = cpu_seconds(), time.perf_counter()
        for layer in man.layers:
            for m in MEASURES:
                meas = registry.get(m)
                inp = LayerInputs(layer, DataInputs(f_src[layer], np.arange(len(ys)), ys, fs),
                                  DataInputs(f_tgt[layer], np.arange(len(yt)), yt, ft) if "target" in meas.needs else None,
                                  plane, 0, device, registry.settings(m, {}))
                meas.compute(inp)
        t["measures"] += cpu_seconds() - c0
        t["measures_wall"] += time.perf_counter() - w0
    return t


def run_child(kind: str, run: Path, device: str, batch: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--run", str(run), "--device", device,
                          "--batch", str(batch)], capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true", help="full sizes on CUDA")
    ap.add_argument("--child", choices=["analyze", "parts"])
    ap.add_argument("--run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    if args.child:
        fn = child_analyze if args.child == "analyze" else child_parts
        print(json.dumps(fn(Path(args.run), args.device, args.batch)))
        return
    device = "cuda" if args.gpu else "cpu"
    width, ckpts = (64, 20) if args.gpu else (8, 4)
    sizes = (5000, 10000, 20000) if args.gpu else (500, 1000, 2000)
    n_mid = sizes[1]
    configs = [(n, ALL_LAYERS) for n in sizes] + [(n_mid, ALL_LAYERS[-1:]), (n_mid, ALL_LAYERS[-3:])]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, layers in configs:
            run = make_run(Path(tmp) / f"n{n}-L{len(layers)}", n, ckpts, width, layers)
            a = run_child("analyze", run, device, args.batch)
            p = run_child("parts", run, device, args.batch)
            irr = p["forward"] + p["measures"]
            rows.append({"n": n, "layers": len(layers), "analyze_cpu_s": a["cpu"], "analyze_wall_s": a["wall"],
                         "forward_s": p["forward"], "measures_s": p["measures"], "irreducible_s": irr,
                         "ratio": a["cpu"] / irr, "analyze_minus_measures_s": a["cpu"] - p["measures"],
                         "peak_rss_mib": a["rss_mib"], "start_rss_mib": a["start_rss_mib"]})
            print(rows[-1], flush=True)
    full = [r for r in rows if r["layers"] == len(ALL_LAYERS)]
    ns = np.log([r["n"] for r in full])
    exp_an = float(np.polyfit(ns, np.log([r["analyze_cpu_s"] for r in full]), 1)[0])
    exp_rss = float(np.polyfit(ns, np.log([r["peak_rss_mib"] for r in full]), 1)[0])
    by_l = sorted([r for r in rows if r["n"] == n_mid], key=lambda r: r["layers"])
    lines = [f"# analyze_scale ({'GPU' if args.gpu else 'CPU'})", "",
             f"Command: `.venv/bin/python benchmarks/analyze_scale.py{' --gpu' if args.gpu else ''}`; "
             f"resnet18 width {width}, {ckpts} checkpoints, 3x32x32 inputs, n source + n target samples, "
             f"measures {', '.join(MEASURES)}, max_samples 1000, one torch thread, device {device}. "
             "Times are CPU seconds of each fresh process (the machine is shared; CPU time is steadier "
             "than wall time), `irreducible` = one load + one forward pass per checkpoint + the measures' "
             "own computations, timed separately by hand.", "",
             "| n | layers | analyze (s) | forward (s) | measures (s) | irreducible (s) | analyze / irreducible "
             "| analyze - measures (s) | peak RSS (MiB) | RSS after imports (MiB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['layers']} | {r['analyze_cpu_s']:.1f} | {r['forward_s']:.1f} | "
                     f"{r['measures_s']:.1f} | {r['irreducible_s']:.1f} | {r['ratio']:.2f} | "
                     f"{r['analyze_minus_measures_s']:.1f} | {r['peak_rss_mib']:.0f} | {r['start_rss_mib']:.0f} |")
    lines += ["", f"Scaling over n at {len(ALL_LAYERS)} layers: analyze time ~ n^{exp_an:.2f}, peak RSS ~ n^{exp_rss:.2f}.",
              "Over layers at n = %d: analyze - measures = %s s for %s layers (one forward pass per checkpoint "
              "whatever the number of layers; the measures grow with the layers)." % (
                  n_mid, ", ".join(f"{r['analyze_minus_measures_s']:.1f}" for r in by_l),
                  ", ".join(str(r["layers"]) for r in by_l)),
              f"Worst ratio analyze / irreducible: {max(r['ratio'] for r in rows):.2f} (target <= 1.25)."]
    text = "\n".join(lines) + "\n"
    out = ROOT / "benchmarks" / "results" / f"analyze_scale{'_gpu' if args.gpu else ''}.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
