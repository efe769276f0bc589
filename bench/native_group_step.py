"""The vectorised group's training step with torchmim.native's MLP kernels (issue 11, eighth round).

    python bench/native_group_step.py --out /tmp/native_step.json     # ~1 min

Three tables, one thread, in one process:

* ``step``: a fig3-shaped group's training step — the loss of 20 members (10 MIM + 10 VAE, β = 1,
  so MIM's decoder path runs: four 2 → W → 4 MLPs per step) and its gradients, Adam excluded —
  with ``FAST_PATHS.native_kernels`` on (``networks.native_group_mlp``: each MLP's forward and
  backward one call of ``kernels.c``) against off (torch's ``baddbmm``/``affine`` + ``sigmoid_``
  + autograd, every other fast path on in both), interleaved, 15 rounds of 10 steps after a
  warm-up round, medians;
  the largest relative difference of the gradients is printed. The kernel runs at every width
  here, below ``vectorized.NATIVE_MIN_WIDTH`` too (the measurement behind that rule).
* ``val``: the same group's validation loss (10,000 points per member, no autograd: the
  MLPs' forward kernel alone, at every width) with the kernel against torch's ops, 7 rounds.
* ``prototype``: the MLP alone as a ~50-line C prototype (the kernel's algorithm with libm's
  ``expf``, called through ctypes without torchmim's wrapper or autograd) against torch's
  ``baddbmm`` + ``sigmoid_`` + autograd on the same tensors (best of 7 × 200 calls), on fig3's
  layers and on fig4's wider ones (20 → 50 → 8, 4 → 50 → 40: small GEMMs where torch's MKL
  products win, which is why ``native_group_mlp`` leaves inputs wider than 4 and outputs wider
  than 8 to torch). Checks that both compute the same outputs and gradients. Needs ``cc``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import torch

from torchmim.allocator import keep_freed_memory

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy_fast_paths import best_us, interleave  # noqa: E402  (bench/toy_fast_paths.py)

SOURCE = r"""
#include <math.h>
#include <string.h>
#include <stdlib.h>
#define T 16
typedef float vf __attribute__((vector_size(64)));
static inline vf vexp(vf a) { vf r; for (int l = 0; l < T; l++) r[l] = expf(a[l]); return r; }
static inline float hsum(vf a) { float s = 0; for (int l = 0; l < T; l++) s += a[l]; return s; }
/* same contract as mlp_fb; B a multiple of T */
void mlp_fb(int M, int B, int I, int H, int O, const float *x, const float *w1, const float *b1,
            const float *w2, const float *b2, const float *g, float *y, float *dx, float *dw1,
            float *db1, float *dw2, float *db2) {
    vf *h = aligned_alloc(64, sizeof(vf) * H), *da = aligned_alloc(64, sizeof(vf) * H);
    vf *pw1 = aligned_alloc(64, sizeof(vf) * H * I), *pb1 = aligned_alloc(64, sizeof(vf) * H);
    vf *pw2 = aligned_alloc(64, sizeof(vf) * O * H), *pb2 = aligned_alloc(64, sizeof(vf) * O);
    vf xv[64], gv[64];
    for (int m = 0; m < M; m++) {
        const float *W1 = w1 + m * H * I, *B1 = b1 + m * H, *W2 = w2 + m * O * H, *B2 = b2 + m * O;
        memset(pw1, 0, sizeof(vf) * H * I); memset(pb1, 0, sizeof(vf) * H);
        memset(pw2, 0, sizeof(vf) * O * H); memset(pb2, 0, sizeof(vf) * O);
        for (int r0 = 0; r0 < B; r0 += T) {
            long base = (long)m * B + r0;
            for (int i = 0; i < I; i++) for (int l = 0; l < T; l++) xv[i][l] = x[(base + l) * I + i];
            for (int o = 0; o < O; o++) for (int l = 0; l < T; l++) gv[o][l] = g[(base + l) * O + o];
            for (int k = 0; k < H; k++) {
                vf a = B1[k] - (vf){0};
                for (int i = 0; i < I; i++) a += W1[k * I + i] * xv[i];
                h[k] = 1.0f / (1.0f + vexp(-a));
            }
            for (int o = 0; o < O; o++) {
                vf a = B2[o] - (vf){0};
                for (int k = 0; k < H; k++) { a += W2[o * H + k] * h[k]; pw2[o * H + k] += gv[o] * h[k]; }
                for (int l = 0; l < T; l++) y[(base + l) * O + o] = a[l];
                pb2[o] += gv[o];
            }
            for (int k = 0; k < H; k++) {
                vf d = (vf){0};
                for (int o = 0; o < O; o++) d += W2[o * H + k] * gv[o];
                da[k] = d * h[k] * (1.0f - h[k]);
                pb1[k] += da[k];
                for (int i = 0; i < I; i++) pw1[k * I + i] += da[k] * xv[i];
            }
            for (int i = 0; i < I; i++) {
                vf d = (vf){0};
                for (int k = 0; k < H; k++) d += W1[k * I + i] * da[k];
                for (int l = 0; l < T; l++) dx[(base + l) * I + i] = d[l];
            }
        }
        for (int j = 0; j < H * I; j++) dw1[m * H * I + j] = hsum(pw1[j]);
        for (int j = 0; j < H; j++) db1[m * H + j] = hsum(pb1[j]);
        for (int j = 0; j < O * H; j++) dw2[m * O * H + j] = hsum(pw2[j]);
        for (int j = 0; j < O; j++) db2[m * O + j] = hsum(pb2[j]);
    }
    free(h); free(da); free(pw1); free(pb1); free(pw2); free(pb2);
}
"""

SHAPES = [(20, 2, 5, 4), (20, 2, 20, 4), (20, 2, 50, 4), (20, 2, 100, 4), (20, 2, 500, 4),
          (40, 20, 50, 8), (40, 4, 50, 40)]


def build(folder: Path) -> ctypes.CDLL:
    (folder / "step.c").write_text(SOURCE)
    subprocess.run(["cc", "-O3", "-march=native", "-ffast-math", "-shared", "-fPIC",
                    str(folder / "step.c"), "-o", str(folder / "step.so"), "-lm"], check=True)
    return ctypes.CDLL(str(folder / "step.so"))


def measure(lib: ctypes.CDLL, m: int, n_in: int, width: int, n_out: int, b: int = 128) -> dict:
    """One shape: the C prototype against torch, the same tensors, in this process."""
    g = torch.Generator().manual_seed(0)
    x, w1, b1, w2, b2 = (torch.randn(*s, generator=g).requires_grad_() for s in (
        (m, b, n_in), (m, width, n_in), (m, width), (m, n_out, width), (m, n_out)))
    dy = torch.randn(m, b, n_out, generator=g)

    def with_torch() -> tuple[torch.Tensor, ...]:
        h = torch.baddbmm(b1.unsqueeze(1), x, w1.mT).sigmoid_()
        y = torch.baddbmm(b2.unsqueeze(1), h, w2.mT)
        return (y.detach(), *torch.autograd.grad(y, (x, w1, b1, w2, b2), dy))

    outs = [torch.empty(m, b, n_out), torch.empty(m, b, n_in), torch.empty(m, width, n_in),
            torch.empty(m, width), torch.empty(m, n_out, width), torch.empty(m, n_out)]
    ptrs = [ctypes.c_void_p(t.detach().data_ptr()) for t in (x, w1, b1, w2, b2, dy, *outs)]

    def native() -> list[torch.Tensor]:
        lib.mlp_fb(m, b, n_in, width, n_out, *ptrs)
        return outs

    err = max(float((r - o).abs().max() / r.abs().max()) for r, o in zip(with_torch(), native()))
    t_torch, t_native = best_us(with_torch, 200), best_us(native, 200)
    return {"members": m, "shape": f"{n_in} → {width} → {n_out}", "torch_us": t_torch,
            "native_us": t_native, "ratio": t_torch / t_native, "max_relative_error": err}


def fig3_group(width: int):
    """A fig3 group of 20 (10 MIM + 10 VAE) at ``width``."""
    import torchmim as tm
    from torchmim.training import TrainerConfig, VectorizedTrainer

    models = []
    for i in range(20):
        torch.manual_seed(i)
        models.append(tm.MLPModelConfig(hidden=width).build())
    return VectorizedTrainer(models, [tm.MIM(), tm.VAE()] * 10, TrainerConfig(epochs=1),
                             seeds=list(range(20)))


def group_step(widths: list[int], rounds: int = 15) -> list[dict]:
    """The ``step`` table (module docs)."""
    import torchmim as tm
    from torchmim.layers import fast_paths
    from torchmim.training.vectorized import _Kinds

    rows = []
    for width in widths:
        vt = fig3_group(width)
        x = torch.as_tensor(tm.paper_2d_mixture().sample(20 * 128, seed=0)[0],
                            dtype=torch.float32).reshape(20, 128, 2)
        beta = torch.ones(20)
        kind = _Kinds.of(vt.members, [1.0] * 20, vt.device)
        params = [vt.params[n].clone().requires_grad_() for n in vt.names]
        p = dict(zip(vt.names, params))

        def ten_steps(kernel: bool, vt=vt, x=x, beta=beta, kind=kind, params=params, p=p):
            vt._native = kernel  # at every width: NATIVE_MIN_WIDTH's evidence
            gens = [torch.Generator().manual_seed(j) for j in range(20)]
            with fast_paths(native_kernels=kernel):
                for _ in range(10):
                    loss, _ = vt._loss(p, x, beta, kind, gens, None)
                    grads = torch.autograd.grad(loss.sum(), params)
            return grads

        t, grads = interleave({"native": partial(ten_steps, True),
                               "torch": partial(ten_steps, False)}, rounds)
        diff = max(float((a - b).abs().max() / b.abs().max())
                   for a, b in zip(grads["native"], grads["torch"]))
        rows.append({"width": width, "native_ms": 1e2 * t["native"], "torch_ms": 1e2 * t["torch"],
                     "ratio": t["torch"] / t["native"], "max_relative_gradient_difference": diff})
        print(rows[-1], flush=True)
    return rows


def validation(widths: list[int], rounds: int = 7) -> list[dict]:
    """The ``val`` table (module docs)."""
    import torchmim as tm

    rows = []
    for width in widths:
        vt = fig3_group(width)
        vals = [torch.as_tensor(tm.paper_2d_mixture().sample(10_000, seed=s)[0],
                                dtype=torch.float32) for s in range(20)]
        latents = vt._latents(list(range(20)))

        def val_loss(kernel: bool, vt=vt, vals=vals, latents=latents) -> torch.Tensor:
            vt._native_eval = kernel
            with torch.no_grad():
                return vt._val_loss(vt.params, vals, vt.members, 5, latents)

        t, losses = interleave({"native": partial(val_loss, True),
                                "torch": partial(val_loss, False)}, rounds)
        rows.append({"width": width, "native_s": t["native"], "torch_s": t["torch"],
                     "ratio": t["torch"] / t["native"],
                     "max_loss_difference": float((losses["native"] - losses["torch"]).abs().max())})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--widths", nargs="+", type=int, default=[5, 20, 50, 100, 200, 500])
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    steps = group_step(a.widths)
    vals = validation(a.widths)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        lib = build(Path(tmp))
        for shape in SHAPES:
            rows.append(measure(lib, *shape))
            print(rows[-1], flush=True)
    print(f"\ntorch {torch.__version__}, 1 thread, batch 128\n")
    print("| width | step with the kernel (ms) | with torch's ops (ms) | ratio | max rel. grad. diff. |")
    print("|---:|---:|---:|---:|---:|")
    for r in steps:
        print(f"| {r['width']} | {r['native_ms']:.2f} | {r['torch_ms']:.2f} | **{r['ratio']:.2f}** | "
              f"{r['max_relative_gradient_difference']:.1e} |")
    print("\n| width | validation loss with the kernel (s) | with torch's ops (s) | ratio |")
    print("|---:|---:|---:|---:|")
    for r in vals:
        print(f"| {r['width']} | {r['native_s']:.3f} | {r['torch_s']:.3f} | **{r['ratio']:.2f}** |")
    print()
    print("| members | MLP | torch (µs) | C prototype (µs) | ratio | max rel. error |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['members']} | {r['shape']} | {r['torch_us']:.0f} | {r['native_us']:.0f} | "
              f"**{r['ratio']:.2f}** | {r['max_relative_error']:.1e} |")
    if a.out is not None:
        a.out.write_text(json.dumps({"step": steps, "validation": vals, "prototype": rows,
                                     "torch": torch.__version__},
                                    indent=2) + "\n")


if __name__ == "__main__":
    main()
