"""The VampPrior reference against torchmim in full precision and with ``train.precision="bf16-mixed"``.

    python bench/reference_precision.py                      # ~5 min on the idle 2-core machine
    python bench/reference_precision.py --steps 4 --warmup 1 --only train_conv_std   # a smoke run
    python bench/reference_precision.py --out /tmp/refprec.json
    python bench/reference_precision.py --only --nll --ll-rounds 3   # the IS-NLL alone

Uses the side-by-side harness of ``../shared/bench/vampprior_ref/`` (``--harness``) for everything
it defines — the reference code and its training step (``vamp_driver``), the weight copy into
torchmim's model, the same-function check, the interleaved timing — and adds one contestant: the
torchmim step with the objective under :func:`torchmim.precision.autocast` (what ``Trainer`` does
with ``train.precision="bf16-mixed"``: forward in the autocast region; backward, per-parameter
gradient normalisation and Adam outside it). Three models hold the same weights: the reference,
torchmim full precision and torchmim bf16-mixed; each round times the three steps (VAE, batch 100
of dynamically binarised Fashion-MNIST, AdamNormGrad vs gradient normalisation + Adam) in an order
that flips every round. Printed: medians, ratio = reference time / torchmim time, and the −ELBO of
the first batch under the same noise on each side (bf16-mixed differs by bfloat16's rounding).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
from pathlib import Path

import torch

import torchmim as tm
from torchmim.precision import autocast

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image import train_step  # noqa: E402  (bench/image.py: the step bench/image.py times)

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT.parent / "shared" / "bench" / "vampprior_ref" / "bench_side_by_side.py"


def load_harness(path: Path):
    if not path.exists():
        sys.exit(f"the side-by-side harness is not at {path} (--harness)")
    spec = importlib.util.spec_from_file_location("bench_side_by_side", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@torch.no_grad()
def neg_elbo(model, x: torch.Tensor, precision: str, seed: int = 1234) -> float:
    torch.manual_seed(seed)
    with autocast(precision, "cpu"):
        e = tm.get_objective("vae")(model, x.view(-1, 1, 28, 28), 1.0).terms["encoder"]
    return float(-(e.log_px_z + e.log_pz - e.log_qz_x).mean())


def bench(key: str, h, vd, ref_mod, x_train, perm, a) -> dict:
    model, prior, tm_name, _ = h.TRAIN_BENCHES[key]
    ref, ours = h.build_pair(ref_mod, model, prior, tm_name)
    _, mixed = h.build_pair(ref_mod, model, prior, tm_name)
    check = torch.bernoulli(x_train[perm[:h.BATCH]])
    e_ref, e_ours, e_diff = h.elbo_identity_check(ref, ours, check)
    e_mixed = neg_elbo(mixed, check, "bf16-mixed")
    for m in (ours, mixed):  # the check moved batch-norm statistics: start all three equal
        vd.copy_reference_to_torchmim(ref, m, model)
    for m in (ref, ours, mixed):
        m.train()
    ref_opt = vd.reference_optimizer(ref_mod, ref, "normgrad", h.LR)
    ours_opt = torch.optim.Adam(ours.parameters(), h.LR)
    mixed_opt = torch.optim.Adam(mixed.parameters(), h.LR)
    vae = tm.get_objective("vae")

    def batch(r: int) -> torch.Tensor:
        i = (r * h.BATCH) % (x_train.shape[0] - h.BATCH)
        return x_train[perm[i:i + h.BATCH]]

    times = h.interleave({
        "ref": lambda r: vd.reference_train_step(ref, ref_opt, batch(r)),
        "full": lambda r: h.ours_train_step(ours, vae, ours_opt, batch(r).view(-1, 1, 28, 28), True),
        "bf16-mixed": lambda r: train_step(mixed, vae, mixed_opt, batch(r).view(-1, 1, 28, 28),
                                           "bf16-mixed"),
    }, a.warmup, a.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    row = {"bench": key, "ref_img_s": h.BATCH / med["ref"], "full_img_s": h.BATCH / med["full"],
           "bf16_img_s": h.BATCH / med["bf16-mixed"], "ratio_full": med["ref"] / med["full"],
           "ratio_bf16": med["ref"] / med["bf16-mixed"], "neg_elbo_ref": e_ref,
           "neg_elbo_full": e_ours, "neg_elbo_bf16": e_mixed, "max_abs_diff_full": e_diff,
           "times": times, "load": os.getloadavg()}
    print(f"{key}: reference {row['ref_img_s']:.1f}, torchmim full {row['full_img_s']:.1f} "
          f"({row['ratio_full']:.2f}×), bf16-mixed {row['bf16_img_s']:.1f} "
          f"({row['ratio_bf16']:.2f}×) images/s; −ELBO {e_ref:.3f} / {e_ours:.3f} / {e_mixed:.3f}; "
          f"load {'/'.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    return row


def bench_nll(h, vd, ref_mod, x_test, a) -> dict:
    """IS-NLL (S = ``--ll-S``) of one test image per round: the reference, torchmim in full
    precision and with ``precision="bf16-mixed"`` (``eval.nll_precision``; the same draws), and
    how far the bf16 value moves from the full one."""
    ref, ours = h.build_pair(ref_mod, "conv", "standard", "convhvae")
    ref.eval(), ours.eval()
    values: dict[str, list[float]] = {"ref": [], "full": [], "bf16-mixed": []}

    def image(r: int) -> torch.Tensor:
        return x_test[r % x_test.shape[0]:r % x_test.shape[0] + 1]

    def ours_nll(r: int, precision: str) -> None:
        v = tm.metrics.importance_sampled_nll(ours, image(r).view(-1, 1, 28, 28), a.ll_S,
                                              seed=r, precision=precision)
        values[precision].append(float(v))

    times = h.interleave({
        "ref": lambda r: values["ref"].append(vd.reference_nll(ref, image(r), a.ll_S, 100,
                                                               plot=False)),
        "full": lambda r: ours_nll(r, "full"),
        "bf16-mixed": lambda r: ours_nll(r, "bf16-mixed"),
    }, 1, a.ll_rounds)
    med = {k: statistics.median(v) for k, v in times.items()}
    diffs = [abs(b - f) for f, b in zip(values["full"], values["bf16-mixed"])]
    row = {"bench": "nll_conv_std", "ref_s": med["ref"], "full_s": med["full"],
           "bf16_s": med["bf16-mixed"], "ratio_full": med["ref"] / med["full"],
           "ratio_bf16": med["ref"] / med["bf16-mixed"], "values": values,
           "max_abs_diff_bf16_vs_full": max(diffs), "load": os.getloadavg()}
    print(f"nll_conv_std (S = {a.ll_S}, s per image): reference {med['ref']:.2f}, torchmim full "
          f"{med['full']:.2f} ({row['ratio_full']:.2f}×), bf16-mixed {med['bf16-mixed']:.2f} "
          f"({row['ratio_bf16']:.2f}×); |NLL bf16 − full| up to {max(diffs):.3f} nats "
          f"(values {values}); load {'/'.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--harness", type=Path, default=HARNESS)
    ap.add_argument("--steps", type=int, default=15, help="timed rounds")
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    ap.add_argument("--only", nargs="*", default=None, help="train_conv_std train_conv_vp train_pixel")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    ap.add_argument("--nll", action="store_true", help="also the IS-NLL (see bench_nll)")
    ap.add_argument("--ll-S", type=int, default=5000)
    ap.add_argument("--ll-rounds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    h = load_harness(a.harness)
    vd = h.vd
    ref_mod = vd.import_reference()
    x_train, x_test = vd.load_fashion_mnist()
    perm = torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load "
          f"{'/'.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    keys = list(h.TRAIN_BENCHES) if a.only is None else a.only
    rows = [bench(k, h, vd, ref_mod, x_train, perm, a) for k in keys]
    nll = bench_nll(h, vd, ref_mod, x_test, a) if a.nll else None
    print("\n| benchmark | reference | torchmim full | torchmim bf16-mixed | ratio full | ratio "
          "bf16-mixed | −ELBO ref / full / bf16-mixed |\n|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['bench']} | {r['ref_img_s']:.1f} | {r['full_img_s']:.1f} | {r['bf16_img_s']:.1f} "
              f"| {r['ratio_full']:.2f} | **{r['ratio_bf16']:.2f}** | {r['neg_elbo_ref']:.3f} / "
              f"{r['neg_elbo_full']:.3f} / {r['neg_elbo_bf16']:.3f} |")
    if a.out is not None:
        a.out.write_text(json.dumps({"torch": torch.__version__, "threads": a.threads,
                                     "rows": rows, "nll": nll}, indent=1))


if __name__ == "__main__":
    main()
