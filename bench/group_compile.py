"""Does ``torch.compile`` of the vectorised group's loss pay off? (issue 11; measured, not used)

    python bench/group_compile.py                       # fig4's shape: 20 members, width 50, z = 10
    python bench/group_compile.py --epochs 6 --n-train 1280   # a smoke run

One ``VectorizedTrainer`` group of fig4's runs (latent size ``--latent``, 10 seeds × MIM/VAE, width
50, x ∈ R²⁰; fewer points per epoch, no early stopping), trained twice in one process from the same
weights: eager (torchmim's path) and with ``VectorizedTrainer._loss_given`` — the stacked loss as a
function of tensors, the noise drawn outside it — wrapped in ``torch.compile`` (inductor, C++
codegen; needs a C++ compiler at run time). The noise generators, Adam and the bookkeeping stay
eager. Printed: every epoch's seconds (the first epochs include compilation; the decoder path that
starts after the β warm-up is a second graph), the steady-state ratio and the compile time
against a full fig4 group's training (200 epochs of 10,000 points).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from padded_groups import build, fig4_cells  # noqa: E402

from torchmim.training import VectorizedTrainer  # noqa: E402


def train(configs: list, tc, compiled: bool) -> tuple[list[float], float, float]:  # noqa: D103
    datas, models = build(configs)
    vt = VectorizedTrainer(models, [c.objective for c in configs], tc, seeds=[c.seed for c in configs])
    if compiled:
        vt._loss_given = torch.compile(vt._loss_given, dynamic=False)
    start = time.perf_counter()
    vt.fit([d.train for d in datas], [d.val[0] for d in datas])
    total = time.perf_counter() - start
    final = sum(float(v.double().sum()) for v in vt.params.values())
    return vt.epoch_seconds, total, final


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latent", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--n-train", type=int, default=2560)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    configs = [c.config for c in fig4_cells(a.seeds, [a.latent], a.n_train, 512)]
    tc = dataclasses.replace(configs[0].train, epochs=a.epochs, early_stopping=False)
    if a.epochs < tc.warmup_epochs + 3:  # the steady state: the epochs after both compilations
        ap.error(f"--epochs must be at least {tc.warmup_epochs + 3} (warm-up {tc.warmup_epochs}, "
                 "then the decoder path's compilation, then the epochs that are timed)")
    load0 = "/".join(f"{v:.1f}" for v in os.getloadavg())
    eager, t_eager, p_eager = train(configs, tc, False)
    comp, t_comp, p_comp = train(configs, tc, True)
    load1 = "/".join(f"{v:.1f}" for v in os.getloadavg())
    # steady state: the epochs after the warm-up (both graphs compiled), median per epoch
    w = tc.warmup_epochs + 1
    s_eager, s_comp = statistics.median(eager[w:]), statistics.median(comp[w:])
    compile_s = t_comp - s_comp * len(comp)
    full_epochs = 200 * 10_000 / a.n_train  # a fig4 group at the protocol, in these epochs
    print(f"{len(configs)} members, width 50, z = {a.latent}, {a.n_train} points per epoch, "
          f"{a.threads} thread(s), load {load0} → {load1}")
    print("eager    s/epoch:", " ".join(f"{t:.3f}" for t in eager))
    print("compiled s/epoch:", " ".join(f"{t:.3f}" for t in comp))
    print(f"steady state: eager {s_eager:.3f} s, compiled {s_comp:.3f} s per epoch "
          f"({s_eager / s_comp:.2f}×); compilation ≈ {compile_s:.1f} s")
    print(f"a fig4 group at the protocol ({full_epochs:.0f} of these epochs): eager "
          f"{s_eager * full_epochs:.0f} s, compiled {s_comp * full_epochs + compile_s:.0f} s "
          f"({s_eager * full_epochs / (s_comp * full_epochs + compile_s):.2f}× with compilation)")
    print(f"parameter sums after training (rounding differs): eager {p_eager:.6f}, "
          f"compiled {p_comp:.6f}")
    if a.out is not None:
        a.out.write_text(json.dumps({"eager": eager, "compiled": comp, "load": [load0, load1],
                                     "compile_s": compile_s}, indent=1))


if __name__ == "__main__":
    main()
