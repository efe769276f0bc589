"""KSG mutual information and k-NN accuracy: the fast paths against the plain implementations, side
by side in one process (issue 11). Prints a Markdown table; ``--out`` also writes JSON.

    python bench/ksg.py --out /tmp/ksg.json                 # KSG table + machine peak (~10 min)
    python bench/ksg.py --sizes 1000 10000 --knn            # quicker, plus k-NN timings
    python bench/ksg.py --crossover --sizes 1000 3000 10000 30000   # the grid behind method="auto"

KSG: for N pairs in d_x + d_z dims, ``method="auto"`` (the fast path) against ``method="kdtree",
workers=1``, the plain cKDTree implementation torchmim had before (the reference), with the ratio
and whether both estimates are the same float. A KD-tree cell predicted to take longer than
``--kdtree-limit`` seconds is not run in full: its time is extrapolated from the tree builds plus
the queries of ``--probe`` points (the query cost is per point), and marked "extrapolated". The
peak is a float64 and a float32 ``torch.mm`` (4096², torch's threads); the brute-force throughput is
in pair-coordinates per second (one |a − b| and one max each).

Timings on a shared machine vary with its load: ratios from the same run are what to compare, and
the load average is printed with every row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import scipy
import sklearn
import torch
from scipy.spatial import cKDTree

from torchmim.metrics import knn_accuracy, ksg_method, ksg_mutual_information


def load() -> float:
    return round(os.getloadavg()[0], 2)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Seconds of one call and its result; calls under a second are repeated (best of 3)."""
    t = time.perf_counter()
    out = fn()
    best = time.perf_counter() - t
    for _ in range(2 if best < 1.0 else 0):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def peak_gflops(dtype: torch.dtype, n: int = 4096, repeat: int = 3) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b))[0] for _ in range(repeat))
    return 2 * n**3 / best / 1e9


def pairs(n: int, d_x: int, d_z: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x ~ N(0, I), z = x (first d_z coordinates, cycled) + 0.1 noise: a near-deterministic
    encoder, the data of bench/run.py's KSG rows."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d_x))
    z = x[:, np.arange(d_z) % d_x] + 0.1 * rng.standard_normal((n, d_z))
    return x, z


def kdtree_probe_seconds(x: np.ndarray, z: np.ndarray, k: int, probe: int) -> float:
    """Predicted time of ``method="kdtree", workers=1``: the three tree builds in full plus the
    three queries of ``probe`` random points, scaled to N points."""
    n = len(x)
    idx = np.random.default_rng(1).choice(n, size=min(probe, n), replace=False)
    joint = np.hstack([x, z])
    t0 = time.perf_counter()
    trees = cKDTree(joint), cKDTree(x), cKDTree(z)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    dist, _ = trees[0].query(joint[idx], k=k + 1, p=np.inf)
    radius = np.nextafter(dist[:, k], 0)
    trees[1].query_ball_point(x[idx], radius, p=np.inf, return_length=True)
    trees[2].query_ball_point(z[idx], radius, p=np.inf, return_length=True)
    return build + (time.perf_counter() - t0) * n / len(idx)


def side_by_side(fns: dict[str, Callable[[], object]], rounds: int = 3,
                 budget: float = 20.0) -> dict[str, tuple[float, object]]:
    """Best time and result of each function, called in turn (a, b, a, b, ...) so that both see
    the same load; up to ``rounds`` rounds while a round takes less than ``budget`` seconds."""
    best: dict[str, tuple[float, object]] = {}
    for _ in range(rounds):
        t_round = time.perf_counter()
        for name, fn in fns.items():
            t = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t
            if name not in best or dt < best[name][0]:
                best[name] = (dt, out)
        if time.perf_counter() - t_round > budget:
            break
    return best


def bench_ksg(sizes: list[int], dims: list[tuple[int, int]], k: int, limit: float,
              probe: int) -> list[dict]:
    rows = []
    for d_x, d_z in dims:
        for n in sizes:
            x, z = pairs(n, d_x, d_z)
            ksg = partial(ksg_mutual_information, x, z, k)
            chosen = ksg_method(n, d_x, d_z)
            predicted = kdtree_probe_seconds(x, z, k, probe)
            fns = {"auto": ksg}
            if predicted <= limit:
                fns["kdtree"] = partial(ksg, method="kdtree", workers=1)
            if chosen == "kdtree" and n <= 10_000:  # what brute force costs where the tree is kept
                fns["brute"] = partial(ksg, method="brute")
            res = side_by_side(fns)
            t_fast, v_fast = res["auto"]
            row = {"n": n, "dims": f"{d_x}+{d_z}", "auto_method": chosen, "auto_s": t_fast,
                   "mi_auto": v_fast, "threads": torch.get_num_threads()}
            if "kdtree" in res:
                t_ref, v_ref = res["kdtree"]
                row.update(kdtree_s=t_ref, kdtree_extrapolated=False, mi_kdtree=v_ref,
                           same_float=v_ref == v_fast)
            else:
                row.update(kdtree_s=predicted, kdtree_extrapolated=True, mi_kdtree=None,
                           same_float=None)
            row["speedup"] = row["kdtree_s"] / t_fast
            if chosen == "brute":
                row["gpaircoords_per_s"] = n * n * (d_x + d_z) / t_fast / 1e9
            if "brute" in res:
                row.update(brute_s=res["brute"][0], brute_same_float=res["brute"][1] == v_fast)
            row["load"] = load()
            rows.append(row)
            print(_ksg_line(row), flush=True)
    return rows


def _ksg_line(r: dict) -> str:
    ref = f"{r['kdtree_s']:.3g}" + (" (extrapolated)" if r["kdtree_extrapolated"] else "")
    same = {True: "yes", False: "NO", None: "n/a"}[r["same_float"]]
    extra = (f"{r['gpaircoords_per_s']:.2f} G pair-coords/s" if "gpaircoords_per_s" in r
             else f"brute force {r['brute_s']:.3g} s" if "brute_s" in r else "")
    return (f"| {r['n']:,} | {r['dims']} | {r['auto_method']} | {r['auto_s']:.3g} | {ref} | "
            f"{r['speedup']:.1f}× | {same} | {extra} | {r['load']} |")


def bench_crossover(sizes: list[int], k: int, limit: float, probe: int) -> list[dict]:
    """brute / kdtree time ratio over N and d on correlated Gaussians (the fit of ksg_method)."""
    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        for d_x, d_z in ((1, 1), (2, 2), (3, 3), (4, 4), (5, 3), (6, 6), (10, 10), (20, 20)):
            x = rng.standard_normal((n, d_x))
            z = 0.7 * x[:, :1] + rng.standard_normal((n, d_z))
            ksg = partial(ksg_mutual_information, x, z, k)
            t_kd = kdtree_probe_seconds(x, z, k, probe)
            extrapolated = t_kd > limit
            if not extrapolated:
                t_kd = timed(partial(ksg, method="kdtree"))[0]
            t_b = timed(partial(ksg, method="brute"))[0]
            row = {"n": n, "dims": f"{d_x}+{d_z}", "kdtree_s": t_kd, "brute_s": t_b,
                   "brute_over_kdtree": t_b / t_kd, "kdtree_extrapolated": extrapolated,
                   "auto": ksg_method(n, d_x, d_z), "load": load()}
            rows.append(row)
            print(f"| {n:,} | {d_x}+{d_z} | {t_kd:.3g}{' (extr.)' if extrapolated else ''} | "
                  f"{t_b:.3g} | {t_b / t_kd:.2f} | {row['auto']} | {row['load']} |", flush=True)
    return rows


def bench_knn(train_sizes: list[int], knn_dims: list[int]) -> list[dict]:
    """knn_accuracy (sklearn's algorithm="auto") against each of sklearn's algorithms, 10,000 test
    codes, 10 classes; the predictions of every algorithm compared with knn_accuracy's."""
    from sklearn.neighbors import KNeighborsClassifier

    rows = []
    for n in train_sizes:
        for d in knn_dims:
            rng = np.random.default_rng(d)
            centers = 2.0 * rng.standard_normal((10, d))
            y_tr, y_te = rng.integers(0, 10, n), rng.integers(0, 10, 10_000)
            z_tr = centers[y_tr] + rng.standard_normal((n, d))
            z_te = centers[y_te] + rng.standard_normal((10_000, d))
            t_acc, acc = timed(partial(knn_accuracy, z_tr, y_tr, z_te, y_te, k=5))
            ref = KNeighborsClassifier(5).fit(z_tr, y_tr).predict(z_te)
            row = {"n_train": n, "d": d, "knn_accuracy_s": t_acc, "accuracy": acc}
            for algo, jobs in (("brute", None), ("brute", -1), ("kd_tree", -1), ("ball_tree", -1)):
                if algo != "brute" and d >= 80 and n > 10_000:
                    continue  # minutes, and 7-10× slower than brute force already at 10k
                clf = KNeighborsClassifier(5, algorithm=algo, n_jobs=jobs)
                t, pred = timed(partial(_fit_predict, clf, z_tr, y_tr, z_te))
                row[f"{algo}/n_jobs={jobs}"] = {"s": t, "differing_predictions":
                                                int((pred != ref).sum())}
            row["load"] = load()
            rows.append(row)
            alts = ", ".join(f"{a} {v['s']:.3g} s ({v['differing_predictions']} differ)"
                             for a, v in row.items() if isinstance(v, dict))
            print(f"| {n:,} | {d} | {t_acc:.3g} | {alts} | {row['load']} |", flush=True)
    return rows


def _fit_predict(clf, z_tr: np.ndarray, y_tr: np.ndarray, z_te: np.ndarray) -> np.ndarray:
    return clf.fit(z_tr, y_tr).predict(z_te)


def warm_up() -> None:
    """First calls pay one-off costs (thread pools, cKDTree's worker threads, torch's top-k): run
    every path once on a small input so that no timed cell includes them."""
    x, z = pairs(300, 2, 2)
    for method in ("kdtree", "brute"):
        for workers in (1, None):
            ksg_mutual_information(x, z, method=method, workers=workers)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    p.add_argument("--dims", nargs="+", default=["2+2", "20+20"], help="d_x+d_z pairs")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--kdtree-limit", type=float, default=120.0,
                   help="extrapolate KD-tree cells predicted to take longer (seconds)")
    p.add_argument("--probe", type=int, default=1000, help="points of the KD-tree time probe")
    p.add_argument("--knn", action="store_true", help="also time k-NN accuracy")
    p.add_argument("--knn-train", type=int, nargs="+", default=[10_000, 50_000])
    p.add_argument("--knn-dims", type=int, nargs="+", default=[2, 20, 80])
    p.add_argument("--crossover", action="store_true",
                   help="only the brute/kdtree grid behind method='auto'")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__, "scipy": scipy.__version__,
            "sklearn": sklearn.__version__, "threads": torch.get_num_threads(),
            "load_start": os.getloadavg()}
    print(f"# {meta}")
    out: dict = {"meta": meta}
    warm_up()
    t0 = time.perf_counter()
    if args.crossover:
        print("| N | dims | kdtree s | brute s | brute/kdtree | auto | load |\n|---|---|---:|---:|---:|---|---:|")
        out["crossover"] = bench_crossover(args.sizes, args.k, args.kdtree_limit, args.probe)
    else:
        out["peak_gflops"] = {"float64": peak_gflops(torch.float64),
                              "float32": peak_gflops(torch.float32), "load": load()}
        print(f"# torch.mm 4096² peak: {out['peak_gflops']['float64']:.1f} GFLOP/s float64, "
              f"{out['peak_gflops']['float32']:.1f} float32 (load {out['peak_gflops']['load']})")
        print("| N | dims | auto picks | auto s | kdtree (workers=1) s | speedup | same float | "
              "throughput / brute force | load |\n|---:|---|---|---:|---:|---:|---|---|---:|")
        dims = [tuple(int(v) for v in d.split("+")) for d in args.dims]
        out["ksg"] = bench_ksg(args.sizes, dims, args.k, args.kdtree_limit, args.probe)
        if args.knn:
            print("\n| train | d | knn_accuracy s | sklearn algorithms | load |\n|---:|---:|---:|---|---:|")
            out["knn"] = bench_knn(args.knn_train, args.knn_dims)
    out["meta"]["load_end"] = os.getloadavg()
    out["meta"]["total_s"] = time.perf_counter() - t0
    print(f"# total {out['meta']['total_s']:.0f} s, load at the end {out['meta']['load_end']}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
