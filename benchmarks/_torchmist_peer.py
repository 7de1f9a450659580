"""Runs torch-mist on data sets written by neural_speed.py; meant for benchmarks/.venv-torchmist.

Usage (called by neural_speed.py, not by hand):
    benchmarks/.venv-torchmist/bin/python benchmarks/_torchmist_peer.py SPEC.json OUT.json

SPEC.json: {"threads": 1, "runs": [{"data": "path.npz", "method": "smile", "critic": "separable",
"hidden": [256, 256], "embed_dim": 32, "batch_size": 128, "steps": 1000, "seed": 0}, ...]}
Each npz holds x_train, y_train, x_test, y_test. OUT.json gets one record per run:
{"nats": ..., "seconds": wall, "cpu_seconds": process CPU time} of the estimate_mi call.
"""
import json
import sys
import time

import numpy as np
import torch
import torch_mist


def run_one(r):
    d = np.load(r["data"])
    tr = {"x": torch.tensor(d["x_train"], dtype=torch.float32), "y": torch.tensor(d["y_train"], dtype=torch.float32)}
    te = {"x": torch.tensor(d["x_test"], dtype=torch.float32), "y": torch.tensor(d["y_test"], dtype=torch.float32)}
    if r["critic"] == "separable":
        hidden = list(r["hidden"]) + [r["embed_dim"]]  # torch-mist: last entry is the embedding width
    else:
        hidden = list(r["hidden"])
    torch.manual_seed(r["seed"])
    t0, c0 = time.perf_counter(), time.process_time()
    mi = torch_mist.estimate_mi(
        data=tr, test_data=te, estimator=r["method"], hidden_dims=hidden,
        critic_type="joint" if r["critic"] == "concat" else "separable",
        neg_samples=0,  # every other sample of the batch is a negative, as in infodyn's B x B matrix
        max_iterations=r["steps"], batch_size=r["batch_size"], early_stopping=False,
        verbose=False, logger=False, optimizer_params={"lr": r["lr"]},
    )
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"nats": float(mi), "seconds": secs, "cpu_seconds": cpu}


def main():
    spec = json.load(open(sys.argv[1]))
    torch.set_num_threads(int(spec.get("threads", 1)))
    warm = dict(spec["runs"][0], steps=10)
    run_one(warm)  # first-call costs (lazy imports, allocator) stay out of the timing, as on infodyn's side
    out = [run_one(r) for r in spec["runs"]]
    json.dump(out, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
