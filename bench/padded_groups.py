"""Training throughput of fig4's latent sizes as one padded group against one group per latent size.

    python bench/padded_groups.py                              # 10 latent sizes × 20 members
    python bench/padded_groups.py --out /tmp/padded.json       # also write the numbers as JSON
    python bench/padded_groups.py --rounds 1 --epochs 1 --n-train 256 --seeds 2   # a smoke run

fig4 (``torchmim.experiments.paper.fig4``) trains, at width 50 on the 20-D mixture (x ∈ R²⁰), the
latent sizes 2, 4, …, 20 × {MIM, VAE} × 10 seeds. ``group_key`` lets all 200 runs share a
vectorised group, zero-padded to the group's largest latent size (``VectorizedTrainer``); the
sweep runner's plan (``plan_units``, at most ``GROUP_MEMBERS`` = 40 members) makes 5 groups of two
latent sizes; before padding they formed one group of 20 per latent size. This measures, in one
process and interleaved (each round runs all arms, in rotating order, so that a change of machine
load shows as a spread between rounds):

* ``one group``: one ``VectorizedTrainer.fit`` of all members (padded to the largest latent size),
* ``plan``: the groups ``plan_units`` makes (``--group-members``), one after the other,
* ``per size``: one ``VectorizedTrainer.fit`` per latent size, one after the other,

as training member-samples per second (members × epochs × points / seconds of ``fit``; each epoch
also takes the validation loss, as in the paper's protocol). Data and initial weights are seeded as
``run()`` seeds them, from fig4's own run configs with fewer points and epochs and no early
stopping (the same work in every arm). Training only: a sweep unit then evaluates its members one
after the other, which the arms do not include. ``os.getloadavg()`` is printed with every round: on a shared
machine compare the two arms of a round, not absolute rates.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from torchmim.experiments import expand, get_sweep
from torchmim.experiments.runner import GROUP_MEMBERS, plan_units
from torchmim.seeding import derive_seed, seed_everything
from torchmim.training import VectorizedTrainer


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def fig4_cells(seeds: int, latents: list[int] | None, n_train: int, n_val: int) -> list:
    """fig4's cells (``seeds`` seeds per latent size and objective, fewer points)."""
    cells = []
    for cell in expand(get_sweep("fig4")):
        c = cell.config
        if c.seed >= seeds or (latents is not None and c.model.z_dim not in latents):
            continue
        cells.append(dataclasses.replace(cell, config=dataclasses.replace(c, data=dataclasses.replace(
            c.data, n_train=n_train, n_val=n_val, n_test=n_val))))
    return cells


def build(configs: list) -> tuple[list, list]:
    """Each config's data and initial model, seeded as ``run()`` seeds them."""
    datas, models = [], []
    for c in configs:
        seed_everything(derive_seed(c.seed, "data"))
        datas.append(c.data.load(seed=c.seed))
        seed_everything(derive_seed(c.seed, "init"))
        models.append(c.model.build())
    return datas, models


def fit(configs: list, train_cfg) -> float:
    """Seconds of one ``VectorizedTrainer.fit`` of ``configs`` (data and weights as ``run()``)."""
    datas, models = build(configs)
    vt = VectorizedTrainer(models, [c.objective for c in configs], train_cfg,
                           seeds=[c.seed for c in configs])
    start = time.perf_counter()
    vt.fit([d.train for d in datas], [d.val[0] for d in datas])
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10, help="seeds per latent size and objective")
    ap.add_argument("--latents", nargs="+", type=int, default=None,
                    help="latent sizes (default: fig4's 2, 4, ..., 20)")
    ap.add_argument("--n-train", type=int, default=2048, help="training points per epoch")
    ap.add_argument("--n-val", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of both arms")
    ap.add_argument("--group-members", type=int, default=GROUP_MEMBERS,
                    help="the 'plan' arm's plan_units(group_members=...)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cells = fig4_cells(args.seeds, args.latents, args.n_train, args.n_val)
    configs = [c.config for c in cells]
    sizes = sorted({c.model.z_dim for c in configs})
    arms = {"one_group": [configs],
            "plan": [[c.config for c in unit]
                     for unit, _ in plan_units(cells, group_members=args.group_members,
                                                     pad_latents=True)],
            "per_size": [[c for c in configs if c.model.z_dim == z] for z in sizes]}
    base = configs[0].train
    cfg = dataclasses.replace(base, epochs=args.epochs, early_stopping=False, progress=False,
                              threads=args.threads, seed=0)
    # warm-up (first-call costs out of the measurements): members of every latent size, padded
    fit(configs[::max(1, len(configs) // len(sizes))], dataclasses.replace(cfg, epochs=1))
    work = len(configs) * args.epochs * args.n_train
    mean_z = sum(c.model.z_dim for c in configs) / len(configs)
    print(f"{len(configs)} members (latent sizes {sizes}, width {configs[0].model.hidden}, "
          f"x_dim {configs[0].model.x_dim}), {args.epochs} epochs of {args.n_train} points; "
          f"padded to z_dim {max(sizes)} (members' mean {mean_z:.1f})")
    heads = {"one_group": "one group", "plan": f"plan ({len(arms['plan'])} groups)",
             "per_size": f"per size ({len(sizes)} groups)"}
    print(f"{'round':>5} " + " ".join(f"{h:>20}" for h in heads.values())
          + "   one group / per size   plan / per size   loadavg")
    rounds = []
    names = list(arms)
    for r in range(args.rounds):
        seconds = {}
        for arm in names[r % 3:] + names[:r % 3]:  # rotate the order from round to round
            seconds[arm] = sum(fit(group, cfg) for group in arms[arm])
        rate = {k: work / seconds[k] for k in names}
        speedup = {k: seconds["per_size"] / seconds[k] for k in ("one_group", "plan")}
        rounds.append({"round": r, "seconds": seconds, "member_samples_per_s": rate,
                       "speedup_vs_per_size": speedup, "loadavg": load()})
        print(f"{r:5d} " + " ".join(f"{rate[k]:20.0f}" for k in names)
              + f"   {speedup['one_group']:20.2f}x   {speedup['plan']:14.2f}x   "
              f"{rounds[-1]['loadavg']}", flush=True)
    median = {k: statistics.median(x["speedup_vs_per_size"][k] for x in rounds)
              for k in ("one_group", "plan")}
    print(f"median speed-up over one group per latent size (member-samples/s): one padded group "
          f"{median['one_group']:.2f}x, the sweep's plan {median['plan']:.2f}x")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()},
            "members": len(configs), "latent_sizes": sizes,
            "groups": {k: [len(g) for g in v] for k, v in arms.items()}, "rounds": rounds,
            "median_speedup_vs_per_size": median}, indent=2) + "\n")


if __name__ == "__main__":
    main()
