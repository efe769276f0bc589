"""Image models and IS-NLL (issue 11): the fast paths against the plain ones, side by side.

    python bench/image.py                          # everything (long on a busy 2-core machine)
    python bench/image.py --only peak train nll    # a subset: peak train alloc nll toy-nll fold-cache
    python bench/image.py --steps 6 --toy-points 2000 --out /tmp/image.json

Every benchmark times a *fast* and a *baseline* contestant interleaved in rounds (the order flips
every round) after warm-up, and reports medians and ratio = baseline time / fast time (> 1: faster):

* peak: GFLOP/s of a 2048² torch.mm and of a 3×3 64→128 convolution on 100×64×28×28 (forward), the
  machine's attainable rate against which the others are read (also both in bfloat16);
* every timed benchmark also times a 2048² torch.mm in its rounds: its GFLOP/s column is read
  against the peak measured under the same load;
* train: one VAE training step as the reference harness times it (batch 100, dynamic binarisation,
  backward, per-parameter gradient normalisation, Adam) for convHVAE standard / VampPrior and
  PixelHVAE; fast = the default switches of ``torchmim.layers.FAST_PATHS`` (channels-last
  PixelCNN), baseline = all off (``--fast fused_gates gated_channels_last channels_last`` times
  other switches as "fast"); both hold the same weights. FLOPs counted by ``torch.utils.flop_counter`` (convolutions and matmuls, fwd + bwd);
* alloc: the convHVAE step in two worker processes, one with :func:`torchmim.allocator.keep_freed_memory`,
  one with glibc's default malloc, stepped alternately;
* nll: convHVAE IS-NLL with S = 5000 of one image: today's ``importance_sampled_nll`` vs torchmim
  0.1's algorithm (``torchmim._reference.nll_0_1``: p(z) per batch, the decoder on whole chunks,
  no_grad) with the fast paths off;
* toy-nll: the same pair on the toy model (width 500) with S = 1000 on ``--toy-points`` points
  (the issue's case is 10,000), with the decoder's FLOPs against the measured mm peak;
* precision: the training step (VAE, and MIM / A-MIM for PixelHVAE) with the objective under
  ``torchmim.precision.autocast("bf16-mixed")`` (what ``Trainer`` does with
  ``train.precision="bf16-mixed"``) against full precision, same weights; the loss of the first
  step on each side shows the rounding;
* fold-cache: the toy IS-NLL with the folded-tanh weights folded once for the whole NLL
  (``torchmim.networks.frozen_folds``) against folding them for every decoder block (before), same
  values.

Prints a Markdown table (with ``os.getloadavg()`` per benchmark) and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

import torchmim as tm
from torchmim._reference import nll_0_1
from torchmim.layers import fast_paths
from torchmim.precision import autocast

HERE = Path(__file__).resolve().parent
PLAIN = {"fused_gates": False, "channels_last": False, "gated_channels_last": False,
         "folded_tanh": False}
FAST = {"fused_gates": False, "channels_last": True, "gated_channels_last": False,
        "folded_tanh": True}  # the defaults


def interleave(contestants: dict[str, Callable[[], object]], rounds: int, warmup: int = 1
               ) -> dict[str, float]:
    """Median seconds per contestant over ``rounds`` interleaved rounds (order flips each round)."""
    names = list(contestants)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        for n in names if r % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            contestants[n]()
            if r >= warmup:
                times[n].append(time.perf_counter() - t)
    return {n: statistics.median(v) for n, v in times.items()}


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


_A, _B = torch.randn(2048, 2048), torch.randn(2048, 2048)
MM_FLOP = 2 * 2048**3


def with_peak(contestants: dict[str, Callable[[], object]]) -> dict[str, Callable[[], object]]:
    """Add a 2048² torch.mm contestant: the machine's attainable GFLOP/s *in the same rounds*, so
    that the fraction of peak is read under the same load (on a shared machine it varies 10×)."""
    return {**contestants, "mm": lambda: _A @ _B}


# ------------------------------------------------------------------------------------------ peak
def bench_peak(results: list[dict], a) -> None:
    x = torch.randn(2048, 2048)
    y = torch.randn(2048, 2048)
    img = torch.randn(100, 64, 28, 28)
    w = torch.randn(128, 64, 3, 3)
    xb, yb, imgb, wb = x.bfloat16(), y.bfloat16(), img.bfloat16(), w.bfloat16()
    l0 = load()
    t = interleave({"mm": lambda: x @ y, "conv": lambda: F.conv2d(img, w, padding=1),
                    "mm_bf16": lambda: xb @ yb,
                    "conv_bf16": lambda: F.conv2d(imgb, wb, padding=1)}, 5)
    mm = 2 * 2048**3 / t["mm"] / 1e9
    conv = 2 * 100 * 784 * 128 * 64 * 9 / t["conv"] / 1e9
    a.peak = max(mm, conv)
    results.append({"bench": "peak: torch.mm 2048²", "fast": mm, "baseline": None, "unit": "GFLOP/s",
                    "ratio": None, "load": l0})
    results.append({"bench": "peak: conv 3×3 64→128, 100×28×28 (fwd)", "fast": conv, "baseline": None,
                    "unit": "GFLOP/s", "ratio": None, "load": l0})
    for what, key, flop in (("torch.mm 2048², bfloat16", "mm_bf16", 2 * 2048**3),
                            ("conv 3×3 64→128, 100×28×28 (fwd), bfloat16", "conv_bf16",
                             2 * 100 * 784 * 128 * 64 * 9)):
        results.append({"bench": f"peak: {what}", "fast": flop / t[key] / 1e9, "baseline": None,
                        "unit": "GFLOP/s", "ratio": None, "load": l0})


# ------------------------------------------------------------------------------------------ train
def _step_fn(model, grey: torch.Tensor, switches: dict, objective: str = "vae",
             precision: str = "full") -> Callable[[], float]:
    """The harness's torchmim step: binarise, VAE loss, backward, gradient normalisation, Adam
    (``precision``: the objective in Trainer's autocast region)."""
    opt = torch.optim.Adam(model.parameters(), 5e-4)
    vae = tm.get_objective(objective)

    def step() -> float:
        with fast_paths(**switches):
            return train_step(model, vae, opt, grey, precision)

    return step


def train_step(model, objective, opt, grey: torch.Tensor, precision: str = "full") -> float:
    """One step as Trainer takes it with ``train.normalize_grads``: binarise, the objective (in the
    autocast region of ``precision``), backward, per-parameter gradient normalisation, Adam."""
    x = torch.bernoulli(grey)
    with autocast(precision, "cpu"):
        loss = objective(model, x, 1.0).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    for p in model.parameters():
        if p.grad is not None:
            p.grad.div_(p.grad.norm().clamp_min(1e-12))
    opt.step()
    return loss.item()


def _step_flops(model, grey: torch.Tensor) -> int:
    model = copy.deepcopy(model)
    with FlopCounterMode(display=False) as counter:
        tm.get_objective("vae")(model, torch.bernoulli(grey), 1.0).loss.backward()
    return counter.get_total_flops()


def _grey() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(100, 1, 28, 28, generator=g) * 0.8


def bench_train(results: list[dict], a) -> None:
    grey = _grey()
    for name, prior in (("convhvae", "normal"), ("convhvae", "vampprior"), ("pixelhvae", "normal")):
        torch.manual_seed(0)
        model = tm.build_model(name=name, prior=prior).train()
        model.initialize_from_data(torch.bernoulli(grey))
        twin = copy.deepcopy(model)
        flops = _step_flops(model, grey)
        l0 = load()
        t = interleave(with_peak({"fast": _step_fn(model, grey, FAST),
                                  "baseline": _step_fn(twin, grey, PLAIN)}), a.steps)
        results.append({"bench": f"{name} ({prior}) VAE step, batch 100", "unit": "images/s",
                        "fast": 100 / t["fast"], "baseline": 100 / t["baseline"],
                        "ratio": t["baseline"] / t["fast"], "load": f"{l0} → {load()}",
                        "gflops": flops / t["fast"] / 1e9, "peak": MM_FLOP / t["mm"] / 1e9})


def bench_precision(results: list[dict], a) -> None:
    grey = _grey()
    for name, prior, objectives in (("convhvae", "normal", ("vae", "mim")),
                                    ("convhvae", "vampprior", ("vae", "mim")),
                                    ("pixelhvae", "normal", ("vae", "amim"))):
        for objective in objectives:
            torch.manual_seed(0)
            model = tm.build_model(name=name, prior=prior).train()
            model.initialize_from_data(torch.bernoulli(grey))
            twin = copy.deepcopy(model)
            fast, base = (_step_fn(model, grey, FAST, objective, "bf16-mixed"),
                          _step_fn(twin, grey, FAST, objective, "full"))
            torch.manual_seed(1)
            first_fast = fast()
            torch.manual_seed(1)
            first_base = base()
            l0 = load()
            t = interleave({"fast": fast, "baseline": base}, a.steps)
            results.append({"bench": f"{name} ({prior}) {objective.upper()} step, bf16-mixed vs full",
                            "unit": "images/s", "fast": 100 / t["fast"], "baseline": 100 / t["baseline"],
                            "ratio": t["baseline"] / t["fast"], "load": f"{l0} → {load()}",
                            "values": {"fast": first_fast, "baseline": first_base}})


# ------------------------------------------------------------------------------------------ alloc
def _alloc_worker(conn, keep: bool, threads: int) -> None:
    torch.set_num_threads(threads)
    if keep:
        from torchmim.allocator import keep_freed_memory

        keep_freed_memory()
    torch.manual_seed(0)
    grey = _grey()
    model = tm.build_model(name="convhvae").train()
    step = _step_fn(model, grey, FAST)
    while conn.recv():
        t = time.perf_counter()
        step()
        conn.send(time.perf_counter() - t)


def bench_alloc(results: list[dict], a) -> None:
    ctx = mp.get_context("spawn")  # a fresh process each: the malloc setting is process-wide
    pipes, procs = {}, []
    for keep in (True, False):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_alloc_worker, args=(child, keep, torch.get_num_threads()), daemon=True)
        p.start()
        pipes[keep], procs = parent, [*procs, p]

    def remote(keep: bool) -> Callable[[], None]:
        def go() -> None:
            pipes[keep].send(True)
            pipes[keep].recv()
        return go

    l0 = load()
    t = interleave({"fast": remote(True), "baseline": remote(False)}, a.steps)
    for conn in pipes.values():
        conn.send(False)
    for p in procs:
        p.join(timeout=30)
    results.append({"bench": "convhvae step: keep_freed_memory vs default glibc malloc",
                    "unit": "images/s", "fast": 100 / t["fast"], "baseline": 100 / t["baseline"],
                    "ratio": t["baseline"] / t["fast"], "load": f"{l0} → {load()}"})


# ------------------------------------------------------------------------------------------ NLL
def _nll_pair(model, x, s: int, rounds: int) -> tuple[dict, dict]:
    values: dict[str, float] = {}

    def fast() -> None:
        with fast_paths(**FAST):
            values["fast"] = tm.metrics.importance_sampled_nll(model, x, s)

    def base() -> None:
        with fast_paths(**PLAIN):
            values["baseline"] = nll_0_1(model, x, s)

    return interleave(with_peak({"fast": fast, "baseline": base}), rounds), values


def bench_nll(results: list[dict], a) -> None:
    torch.manual_seed(0)
    model = tm.build_model(name="convhvae")
    x = torch.bernoulli(_grey()[:1])
    l0 = load()
    t, v = _nll_pair(model, x, 5000, a.nll_rounds)
    results.append({"bench": "convhvae IS-NLL, S = 5000, 1 image", "unit": "s", "fast": t["fast"],
                    "baseline": t["baseline"], "ratio": t["baseline"] / t["fast"],
                    "load": f"{l0} → {load()}", "values": v})


def bench_toy_nll(results: list[dict], a) -> None:
    torch.manual_seed(0)
    model = tm.MLPModelConfig(hidden=500).build()
    x, _ = tm.paper_2d_mixture().sample(a.toy_points, seed=0)
    net = model.decoder.network
    per_pair = sum(2 * m.in_features * m.out_features for m in net.modules()
                   if isinstance(m, torch.nn.Linear))
    flops = per_pair * a.toy_points * 1000
    l0 = load()
    t, v = _nll_pair(model, x, 1000, a.nll_rounds)
    row = {"bench": f"toy IS-NLL, {a.toy_points:,} points, S = 1000, width 500", "unit": "s",
           "fast": t["fast"], "baseline": t["baseline"], "ratio": t["baseline"] / t["fast"],
           "load": f"{l0} → {load()}", "values": v, "gflops": flops / t["fast"] / 1e9,
           "decoder_gflop": flops / 1e9, "peak": MM_FLOP / t["mm"] / 1e9}
    results.append(row)


def bench_fold_cache(results: list[dict], a) -> None:
    """The toy IS-NLL (width 500, S = 1000) folding the tanh weights once for the whole NLL
    (``frozen_folds``) against folding them again for every decoder block (before)."""
    import contextlib

    import torchmim.metrics as metrics

    torch.manual_seed(0)
    model = tm.MLPModelConfig(hidden=500).build()
    x, _ = tm.paper_2d_mixture().sample(a.toy_points, seed=0)
    frozen = metrics.frozen_folds
    values: dict[str, float] = {}

    def fast() -> None:
        with fast_paths(**FAST):
            values["fast"] = tm.metrics.importance_sampled_nll(model, x, 1000)

    def base() -> None:
        metrics.frozen_folds = lambda module: contextlib.nullcontext()
        try:
            with fast_paths(**FAST):
                values["baseline"] = tm.metrics.importance_sampled_nll(model, x, 1000)
        finally:
            metrics.frozen_folds = frozen

    l0 = load()
    t = interleave(with_peak({"fast": fast, "baseline": base}), a.nll_rounds)
    results.append({"bench": f"toy IS-NLL, {a.toy_points:,} points, S = 1000, width 500: weights "
                             "folded once / per decoder block", "unit": "s",
                    "fast": t["fast"], "baseline": t["baseline"],
                    "ratio": t["baseline"] / t["fast"], "load": f"{l0} → {load()}",
                    "values": values})


BENCHES = {"peak": bench_peak, "train": bench_train, "alloc": bench_alloc, "nll": bench_nll,
           "toy-nll": bench_toy_nll, "fold-cache": bench_fold_cache, "precision": bench_precision}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", choices=list(BENCHES), default=list(BENCHES))
    p.add_argument("--steps", type=int, default=8, help="timed rounds per training benchmark")
    p.add_argument("--nll-rounds", type=int, default=2, help="timed rounds per NLL benchmark")
    p.add_argument("--toy-points", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fast", nargs="*", choices=sorted(PLAIN), default=None,
                   help="switches on in the fast contestant (default: torchmim's defaults)")
    p.add_argument("--out", type=Path, default=HERE / "image_results.json")
    a = p.parse_args()
    a.peak = None
    if a.fast is not None:
        FAST.update({k: k in a.fast for k in PLAIN})
    torch.set_num_threads(a.threads)
    results: list[dict] = []
    for name in a.only:
        BENCHES[name](results, a)
        print(f"done {name} (load {load()})", flush=True)
    meta = {"torch": torch.__version__, "threads": a.threads, "machine": platform.platform(),
            "cpus": os.cpu_count(), "peak_gflops": a.peak}
    a.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"\ntorch {meta['torch']}, {a.threads} threads, {meta['machine']}\n")
    print("| benchmark | fast | baseline | unit | ratio | GFLOP/s (of the mm peak in the same rounds) "
          "| load 1/5/15 min |")
    print("|---|---:|---:|---|---:|---:|---|")
    for r in results:
        base = "—" if r["baseline"] is None else f"{r['baseline']:.3g}"
        ratio = "—" if r["ratio"] is None else f"**{r['ratio']:.2f}**"
        gf = r.get("gflops")
        peak = r.get("peak") or a.peak
        gfs = "—" if gf is None else f"{gf:.1f} ({gf / peak:.0%} of {peak:.0f})" if peak else f"{gf:.1f}"
        print(f"| {r['bench']} | {r['fast']:.3g} | {base} | {r['unit']} | {ratio} | {gfs} | {r['load']} |")
        if "values" in r:
            what = "first-step loss" if "bf16" in r["bench"] else "NLL values"
            print(f"|  ↳ {what} (same seed) | {r['values'].get('fast', float('nan')):.4f} | "
                  f"{r['values'].get('baseline', float('nan')):.4f} | nats | | | |")


if __name__ == "__main__":
    main()
