"""The toy fast paths of issue 11's sixth round, each against the plain path, side by side.

    python bench/toy_fast_paths.py --out /tmp/toy_fast.json          # everything, ~6 min idle
    python bench/toy_fast_paths.py --only train --widths 500         # a subset

In one process, one torch thread, glibc's freed memory kept (as in a sweep's worker), rounds
interleaved with the order flipped every round, medians reported:

* ``train``: one epoch (10,000 points, batch 128, a 2,000-point validation loss) of a vectorised
  group of 20 (10 MIM + 10 VAE members, as a fig3 width) with ``VectorizedTrainer(fast=True)``
  (tanh folded into sigmoid units, ``networks.affine``'s backward) against ``fast=False``
  (``torch.tanh`` and autograd's ``baddbmm``, the exact path); the fig3 shape (x, z ∈ R²) at each
  ``--widths`` and fig4's (x ∈ R²⁰, z ∈ R¹⁰, width 50). The members' final validation losses are
  printed for both: the same up to float rounding.
* ``trainer``: one epoch of the plain ``Trainer`` (one model, MIM and VAE) with the MLP's
  training fast paths (``FAST_PATHS.folded_tanh`` above ``FOLD_MIN_WIDTH``, ``affine_backward``)
  against both off, at each ``--widths``.
* ``nll``: the IS-NLL (S = 1000) of ``--nll-points`` points with this round's inference paths
  (``FAST_PATHS.inference_blocks``: the MLP decoder blocks its hidden layers itself and the NLL
  hands it up to 65,536 pairs per call; ``inplace_log_prob``: the Gaussian log-densities in place)
  against both off (the decoder on blocks of 256–1,638 pairs, torch's ``Normal.log_prob``: the
  path before); fig3's shape at each ``--widths`` and fig4's (x ∈ R²⁰, z ∈ R¹⁰, width 50). The
  same draws: the same estimate up to float rounding.

* ``native``: the seventh round's fused kernel (``FAST_PATHS.native_kernels``,
  :mod:`torchmim.native`) against torch's ops with every other fast path on: the decoder MLP
  alone on 65,536 rows without autograd, and the IS-NLL (S = 1000), at each ``--widths`` and
  fig4's shape. The ``nll`` rows above keep the kernel off in both arms (the sixth round's
  comparison).

* ``ops``: the single ops behind these paths, each against the op it replaces (µs per call,
  best of 7 × 300 calls): a linear map's forward + backward with ``networks._Affine`` against
  autograd's ``F.linear`` / ``baddbmm`` for one model and for 20 stacked members at batch 128
  (the shapes behind ``networks._affine_pays``); ``distributions.normal.Normal.log_prob``
  without autograd against torch's; ``torch.tanh`` against ``torch.sigmoid`` on a 128 × 500
  batch (the fold's reason).

Prints a Markdown table with ``os.getloadavg()`` per row and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

import torchmim as tm
from torchmim.allocator import keep_freed_memory
from torchmim.layers import fast_paths
from torchmim.metrics import importance_sampled_nll
from torchmim.training import Trainer, TrainerConfig, VectorizedTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image import interleave as image_interleave  # noqa: E402  (bench/image.py)
from image import load  # noqa: E402


def interleave(contestants: dict[str, Callable[[], object]], rounds: int) -> tuple[dict, dict]:
    """bench/image.py's :func:`interleave` (median seconds, order flipped every round, one
    warm-up round), plus each contestant's last return value."""
    values: dict[str, object] = {}

    def keeping(name: str, f: Callable[[], object]) -> Callable[[], None]:
        return lambda: values.__setitem__(name, f())

    times = image_interleave({n: keeping(n, f) for n, f in contestants.items()}, rounds)
    return times, values


def toy_data(x_dim: int, n: int, seed: int) -> torch.Tensor:
    if x_dim == 2:
        return torch.as_tensor(tm.paper_2d_mixture().sample(n, seed=seed)[0], dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)  # fig4's shape: 5 components in R^20, std 0.25
    means = torch.randn(5, x_dim, generator=g)
    k = torch.randint(0, 5, (n,), generator=g)
    return means[k] + 0.25 * torch.randn(n, x_dim, generator=g)


def group_epoch(x_dim: int, z_dim: int, width: int, x: torch.Tensor, v: torch.Tensor,
                cfg: TrainerConfig, fast: bool) -> list[float]:
    """One epoch of a group of 20 (10 MIM + 10 VAE); the members' validation losses."""
    models = []
    for i in range(20):
        torch.manual_seed(i)
        models.append(tm.MLPModelConfig(x_dim=x_dim, z_dim=z_dim, hidden=width).build())
    vt = VectorizedTrainer(models, [tm.MIM(), tm.VAE()] * 10, cfg, seeds=list(range(20)),
                           fast=fast)
    return [h[-1]["val_loss"] for h in vt.fit([x] * 20, [v] * 20)]


def one_model_epoch(objective: str, width: int, x: torch.Tensor, v: torch.Tensor,
                    cfg: TrainerConfig, fast: bool) -> float:
    """One epoch of the plain Trainer on one model; its validation loss."""
    torch.manual_seed(0)
    model = tm.MLPModelConfig(hidden=width).build()
    with fast_paths(folded_tanh=fast, affine_backward=fast):
        return Trainer(model, tm.get_objective(objective), cfg).fit(x, v)[-1]["val_loss"]


def nll_of(model, x: torch.Tensor, fast: bool, native: bool = False) -> float:
    with fast_paths(inference_blocks=fast, inplace_log_prob=fast, native_kernels=native):
        return float(importance_sampled_nll(model, x, 1000))


def mlp_forward(mlp: torch.nn.Module, z: torch.Tensor, native: bool) -> torch.Tensor:
    with torch.inference_mode(), fast_paths(native_kernels=native):
        return mlp(z)


def bench_native(rows: list[dict], a) -> None:
    """torchmim.native's fused kernel against the torch path it replaces (every other fast path
    on in both arms): the decoder MLP alone on 65,536 rows, and the whole IS-NLL."""
    from torchmim import native

    if not native.available():
        print(f"skipped 'native': {native.unavailable_reason()}")
        return
    shapes = [(2, 2, w) for w in a.widths] + ([(20, 10, 50)] if a.fig4 else [])
    for x_dim, z_dim, width in shapes:
        torch.manual_seed(0)
        model = tm.MLPModelConfig(x_dim=x_dim, z_dim=z_dim, hidden=width).build().eval()
        z = torch.randn(65536, z_dim)
        l0 = load()
        t, vals = interleave({"fast": partial(mlp_forward, model.decoder.network, z, True),
                              "plain": partial(mlp_forward, model.decoder.network, z, False)},
                             a.rounds)
        rows.append({"bench": f"decoder MLP {z_dim} → {width} → {2 * x_dim}, 65,536 rows, "
                              "no autograd", "unit": "ms", "fast": 1e3 * t["fast"],
                     "plain": 1e3 * t["plain"], "ratio": t["plain"] / t["fast"],
                     "ns_per_row_and_unit": t["fast"] / 65536 / width * 1e9,
                     "max_abs_difference": float((vals["fast"] - vals["plain"]).abs().max()),
                     "load": f"{l0} → {load()}"})
        print(rows[-1], flush=True)
        nll_row(rows, a, model, toy_data(x_dim, a.nll_points, 0), (x_dim, z_dim, width),
                partial(nll_of, fast=True, native=True), partial(nll_of, fast=True, native=False),
                ": native kernel vs torch")


def nll_row(rows: list[dict], a, model, x: torch.Tensor, shape: tuple[int, int, int],
            fast: Callable, plain: Callable, what: str = "") -> None:
    """One IS-NLL row: ``fast(model, x)`` against ``plain(model, x)``, interleaved."""
    x_dim, z_dim, width = shape
    l0 = load()
    t, vals = interleave({"fast": partial(fast, model, x), "plain": partial(plain, model, x)},
                         a.rounds)
    rows.append({"bench": f"IS-NLL, {a.nll_points:,} points, S = 1000, x∈R^{x_dim}, "
                          f"z∈R^{z_dim}, width {width}{what}",
                 "unit": "s", "fast": t["fast"], "plain": t["plain"],
                 "ratio": t["plain"] / t["fast"],
                 "ns_per_pair": t["fast"] / (a.nll_points * 1000) * 1e9,
                 "nll": [vals["fast"], vals["plain"]], "load": f"{l0} → {load()}"})
    print(rows[-1], flush=True)


def bench_train(rows: list[dict], a) -> None:
    cfg = TrainerConfig(epochs=1, warmup_epochs=3, progress=False, min_steps=0)
    shapes = [(2, 2, w) for w in a.widths] + ([(20, 10, 50)] if a.fig4 else [])
    for x_dim, z_dim, width in shapes:
        x, v = toy_data(x_dim, 10_000, 0), toy_data(x_dim, 2_000, 1)
        run = partial(group_epoch, x_dim, z_dim, width, x, v, cfg)
        l0 = load()
        t, vals = interleave({"fast": partial(run, True), "plain": partial(run, False)}, a.rounds)
        diff = max(abs(p - q) for p, q in zip(vals["fast"], vals["plain"]))
        rows.append({"bench": f"group of 20 (10 MIM + 10 VAE), x∈R^{x_dim}, z∈R^{z_dim}, "
                              f"width {width}: one epoch", "unit": "s", "fast": t["fast"],
                     "plain": t["plain"], "ratio": t["plain"] / t["fast"],
                     "member_samples_per_s": 20 * 10_000 / t["fast"],
                     "max_val_loss_difference": diff, "load": f"{l0} → {load()}"})
        print(rows[-1], flush=True)


def bench_trainer(rows: list[dict], a) -> None:
    cfg = TrainerConfig(epochs=1, warmup_epochs=3, progress=False, min_steps=0)
    x, v = toy_data(2, 10_000, 0), toy_data(2, 2_000, 1)
    for objective in ("mim", "vae"):
        for width in a.widths:
            run = partial(one_model_epoch, objective, width, x, v, cfg)
            l0 = load()
            t, vals = interleave({"fast": partial(run, True), "plain": partial(run, False)},
                                 a.rounds)
            rows.append({"bench": f"Trainer, one {objective.upper()} model, width {width}: one "
                                  "epoch", "unit": "s", "fast": t["fast"], "plain": t["plain"],
                         "ratio": t["plain"] / t["fast"], "samples_per_s": 10_000 / t["fast"],
                         "val_loss": [vals["fast"], vals["plain"]], "load": f"{l0} → {load()}"})
            print(rows[-1], flush=True)


def bench_nll(rows: list[dict], a) -> None:
    shapes = [(2, 2, w) for w in a.widths] + ([(20, 10, 50)] if a.fig4 else [])
    for x_dim, z_dim, width in shapes:
        x = toy_data(x_dim, a.nll_points, 0)
        torch.manual_seed(0)
        model = tm.MLPModelConfig(x_dim=x_dim, z_dim=z_dim, hidden=width).build()
        nll_row(rows, a, model, x, (x_dim, z_dim, width), partial(nll_of, fast=True),
                partial(nll_of, fast=False))


def best_us(f: Callable[[], object], n: int = 300) -> float:
    f()
    best = float("inf")
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(n):
            f()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


def bench_ops(rows: list[dict], a) -> None:
    from torch.nn import functional as F

    from torchmim.distributions.normal import Normal
    from torchmim.networks import _Affine, _affine_pays

    def pair(fast: Callable[[], object], plain: Callable[[], object], name: str, **extra) -> None:
        l0 = load()
        tf, tp = best_us(fast), best_us(plain)
        rows.append({"bench": name, "unit": "µs", "fast": tf, "plain": tp, "ratio": tp / tf,
                     "load": f"{l0} → {load()}", **extra})
        print(rows[-1], flush=True)

    for m in (None, 20):
        for n_in, n_out in [(2, 5), (2, 50), (2, 100), (2, 200), (2, 500), (10, 50), (10, 500),
                            (20, 50), (20, 500), (50, 4), (50, 40), (500, 4)]:
            lead = (m, 128) if m else (128,)
            x = torch.randn(*lead, n_in, requires_grad=True)
            w = torch.randn(*lead[:-1], n_out, n_in, requires_grad=True)
            b = torch.randn(*lead[:-1], n_out, requires_grad=True)
            g = torch.randn(*lead, n_out)

            def plain_step(x=x, w=w, b=b, g=g) -> object:
                y = (F.linear(x, w, b) if w.dim() == 2
                     else torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2)))
                return torch.autograd.grad(y, (x, w, b), g)

            def fast_step(x=x, w=w, b=b, g=g) -> object:
                return torch.autograd.grad(_Affine.apply(x, w, b), (x, w, b), g)

            pair(fast_step, plain_step, f"linear {n_in} → {n_out}, batch 128"
                 f"{f', {m} stacked members' if m else ''}: forward + backward",
                 pays=_affine_pays(w))
    with torch.no_grad():
        for p, d in ((65_536, 2), (6_553, 20), (65_536, 10)):
            loc, scale, v = torch.randn(p, d), torch.rand(p, d) + 0.1, torch.randn(p, d)
            ours = Normal(loc, scale, validate_args=False)

            def torch_lp(ours=ours, v=v) -> object:
                with fast_paths(inplace_log_prob=False):
                    return ours.log_prob(v)

            pair(partial(ours.log_prob, v), torch_lp,
                 f"Normal.log_prob without autograd, {p:,} × {d}: in place vs torch's")
        h = torch.randn(128, 500)
        pair(partial(torch.sigmoid, h), partial(torch.tanh, h),
             "128 × 500: torch.sigmoid (fast) vs torch.tanh (plain)")


BENCHES = {"train": bench_train, "trainer": bench_trainer, "nll": bench_nll,
           "native": bench_native, "ops": bench_ops}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", choices=list(BENCHES), default=list(BENCHES))
    p.add_argument("--widths", nargs="+", type=int, default=[5, 50, 200, 500])
    p.add_argument("--fig4", action=argparse.BooleanOptionalAction, default=True,
                   help="also the fig4 shape (x in R^20, z in R^10, width 50) in 'train' and 'nll'")
    p.add_argument("--nll-points", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    rows: list[dict] = []
    for name in a.only:
        BENCHES[name](rows, a)
    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread\n")
    print("| benchmark | fast | plain | unit | ratio | load |\n|---|---:|---:|---|---:|---|")
    for r in rows:
        print(f"| {r['bench']} | {r['fast']:.3f} | {r['plain']:.3f} | {r['unit']} | "
              f"**{r['ratio']:.2f}** | {r['load']} |")
    if a.out is not None:
        a.out.write_text(json.dumps({"rows": rows, "torch": torch.__version__}, indent=2) + "\n")


if __name__ == "__main__":
    main()
