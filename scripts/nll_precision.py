"""How far does ``eval.nll_precision="bf16-mixed"`` move the IS-NLL of trained models?

    python scripts/nll_precision.py results/image-cpu-mnist/cells/*convHVAES* --points 50 --samples 1000

For each run folder (``config.yaml`` + ``model.pt``): the run's test images as the run loads them
(``torchmim.runs.load_run_data``), the first ``--points`` of them, and the per-image IS-NLL with
``--samples`` importance samples in full precision and in bf16-mixed under the same seed (the same
draws). Prints one Markdown row per run: the mean NLL both ways, the mean and largest per-image
difference, and the seconds of each (one thread count, one process, in turn).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import torchmim as tm
from torchmim.runs import RunConfig, load_run_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--points", type=int, default=50)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print("| run | NLL full | NLL bf16-mixed | mean diff | max abs diff | s full | s bf16 |\n"
          "|---|---:|---:|---:|---:|---:|---:|", flush=True)
    for folder in a.runs:
        config = RunConfig.from_file(folder / "config.yaml")
        model = tm.load_model(folder / "model.pt")
        x = load_run_data(config).test[0][:a.points]
        out, secs = {}, {}
        for precision in ("full", "bf16-mixed"):
            start = time.perf_counter()
            out[precision] = tm.metrics.importance_sampled_nll(
                model, x, a.samples, reduction="none", seed=0, precision=precision)
            secs[precision] = time.perf_counter() - start
        d = out["bf16-mixed"] - out["full"]
        print(f"| {folder.name} | {out['full'].mean():.3f} | {out['bf16-mixed'].mean():.3f} | "
              f"{d.mean():+.4f} | {np.abs(d).max():.4f} | {secs['full']:.0f} | "
              f"{secs['bf16-mixed']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
