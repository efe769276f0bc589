"""Benchmarks of the hot paths; writes bench/results.json and prints a Markdown table.

    python bench/run.py                 # everything
    python bench/run.py --only toy      # a subset (toy, ksg, nll, image)
    python bench/run.py --threads 1
    python bench/run.py --out /tmp/before.json   # keep a "before" next to an "after"
    python bench/run.py --device cuda --only image toy nll   # on a GPU (timings synchronise)

Speed is measured here, never asserted in unit tests. Copy the table into docs/benchmarks.md with
the command and the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import torchmim as tm

HERE = Path(__file__).resolve().parent
DEVICE = torch.device("cpu")  # set by --device


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def timeit(fn: Callable[[], object], *, repeat: int = 5, warmup: int = 1) -> tuple[float, float]:
    """Median and spread (min–max half-range) of ``repeat`` timed calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times), (max(times) - min(times)) / 2


def bench_toy(results: list[dict]) -> None:
    """Training steps per second on the 2D mixture, batch 128 (one epoch = 79 steps)."""
    x, _ = tm.paper_2d_mixture().sample(128 * 20, seed=0)
    batches = x.to(DEVICE).split(128)
    for name in ("mim", "vae"):
        for hidden in (50, 500):
            torch.manual_seed(0)
            model = tm.MLPModelConfig(hidden=hidden).build().to(DEVICE)
            objective = tm.get_objective(name)
            opt = torch.optim.Adam(model.parameters(), 1e-3)

            def epoch(model=model, objective=objective, opt=opt) -> None:
                for b in batches:
                    loss = objective(model, b, 1.0).loss
                    opt.zero_grad()
                    loss.backward()
                    opt.step()

            med, spread = timeit(epoch)
            results.append({"bench": f"toy train step, {name.upper()}, width {hidden}, batch 128",
                            "value": len(batches) / med, "unit": "steps/s",
                            "spread": len(batches) / med * spread / med})


def bench_ksg(results: list[dict]) -> None:
    """KSG on 10,000 pairs (the paper's protocol) in 2+2 and 20+20 dimensions."""
    rng = np.random.default_rng(0)
    for dx, dz in ((2, 2), (20, 20)):
        x = rng.standard_normal((10_000, dx))
        z = x[:, :dz] + 0.1 * rng.standard_normal((10_000, dz))
        med, spread = timeit(lambda x=x, z=z: tm.metrics.ksg_mutual_information(x, z), repeat=3)
        results.append({"bench": f"KSG MI, N = 10,000, {dx}+{dz} dims", "value": med, "unit": "s",
                        "spread": spread})


def bench_nll(results: list[dict]) -> None:
    """Importance-sampled NLL of 10,000 test points with S = 1000 (toy model, width 500)."""
    model = tm.MLPModelConfig(hidden=500).build().to(DEVICE)
    x, _ = tm.paper_2d_mixture().sample(10_000, seed=0)
    med, spread = timeit(lambda: tm.metrics.importance_sampled_nll(model, x, 1000), repeat=3)
    results.append({"bench": "IS-NLL, 10,000 points, S = 1000, width 500", "value": med, "unit": "s",
                    "spread": spread})


def bench_image(results: list[dict]) -> None:
    """Image models on one 28×28 binary batch of 100: training throughput of convHVAE (MIM, VAE;
    standard and VampPrior), one PixelHVAE A-MIM step, and 16 autoregressive PixelHVAE samples."""
    x = torch.bernoulli(torch.full((100, 1, 28, 28), 0.3)).to(DEVICE)
    for prior in ("standard", "vampprior"):
        for name in ("mim", "vae"):
            torch.manual_seed(0)
            model = tm.build_model(name="convhvae", prior=prior).to(DEVICE)
            model.initialize_from_data(x)
            objective = tm.get_objective(name)
            opt = torch.optim.Adam(model.parameters(), 5e-4)

            def step(model=model, objective=objective, opt=opt) -> None:
                loss = objective(model, x, 1.0).loss
                opt.zero_grad()
                loss.backward()
                opt.step()

            med, spread = timeit(step, repeat=3)
            results.append({"bench": f"convHVAE ({prior}) train, {name.upper()}, batch 100",
                            "value": 100 / med, "unit": "images/s",
                            "spread": 100 / med * spread / med})
    torch.manual_seed(0)
    model = tm.build_model(name="pixelhvae").to(DEVICE)
    objective = tm.get_objective("amim")
    opt = torch.optim.Adam(model.parameters(), 5e-4)

    def pixel_step() -> None:
        loss = objective(model, x, 1.0).loss
        opt.zero_grad()
        loss.backward()
        opt.step()

    med, spread = timeit(pixel_step, repeat=3)
    results.append({"bench": "PixelHVAE (standard) train, A-MIM, batch 100", "value": 100 / med,
                    "unit": "images/s", "spread": 100 / med * spread / med})
    model.eval()
    med, spread = timeit(lambda: model.sample(16), repeat=3)
    results.append({"bench": "PixelHVAE: 16 autoregressive samples", "value": med, "unit": "s",
                    "spread": spread})


BENCHES = {"toy": bench_toy, "ksg": bench_ksg, "nll": bench_nll, "image": bench_image}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), default=sorted(BENCHES))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--out", type=Path, default=HERE / "results.json",
                        help="where to write the JSON results (default: bench/results.json)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = tm.training.resolve_device(args.device)
    torch.set_num_threads(args.threads)
    results: list[dict] = []
    for name in args.only:
        BENCHES[name](results)
    meta = {"torch": torch.__version__, "threads": args.threads, "machine": platform.platform(),
            "processor": platform.processor() or platform.machine(), "device": str(DEVICE),
            "gpu": torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else None}
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"torch {meta['torch']}, {args.threads} threads, {meta['machine']}, device {DEVICE}"
          f"{' (' + meta['gpu'] + ')' if meta['gpu'] else ''}\n")
    print("| benchmark | value | unit |\n|---|---:|---|")
    for r in results:
        print(f"| {r['bench']} | {r['value']:.3g} ± {r['spread']:.2g} | {r['unit']} |")


if __name__ == "__main__":
    main()
