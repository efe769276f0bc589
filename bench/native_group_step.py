"""How much could a native kernel of the vectorised group's training step gain? (issue 11;
a prototype measured for the next round, not library code)

    python bench/native_group_step.py --out /tmp/native_step.json     # ~20 s

The forward and the closed-form backward of a stacked one-hidden-layer sigmoid MLP (M members,
batch 128: y = W₂σ(W₁x + b₁) + b₂, and ∂x, ∂W₁, ∂b₁, ∂W₂, ∂b₂ for a given ∂y) written in ~50 lines
of C — rows in the lanes of one 16-float vector as ``torchmim.native``'s inference kernel, the
weight gradients accumulated per lane and reduced once per member, ``expf`` from libm — against
torch's ``baddbmm`` + ``sigmoid_`` + autograd for the same tensors, one thread, in one process
(best of 5 × 200 calls). The shapes are the encoder/decoder layers of the fig3 groups (2 → W → 4)
and of fig4's (20 → 50 → 8, 4 → 50 → 40). It checks that both compute the same outputs and
gradients (relative error printed) and needs a C compiler (``cc``); not run in the test suite.
The whole step (both networks, the Gaussian densities of both paths, Adam) is what the next round
would write; this measures what the MLP part alone could gain.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from torchmim.allocator import keep_freed_memory

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


def best_us(f, n: int = 200) -> float:
    f()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            f()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


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
    t_torch, t_native = best_us(with_torch), best_us(native)
    return {"members": m, "shape": f"{n_in} → {width} → {n_out}", "torch_us": t_torch,
            "native_us": t_native, "ratio": t_torch / t_native, "max_relative_error": err}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        lib = build(Path(tmp))
        for shape in SHAPES:
            rows.append(measure(lib, *shape))
            print(rows[-1], flush=True)
    print(f"\ntorch {torch.__version__}, 1 thread, batch 128\n")
    print("| members | MLP | torch (µs) | C prototype (µs) | ratio | max rel. error |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['members']} | {r['shape']} | {r['torch_us']:.0f} | {r['native_us']:.0f} | "
              f"**{r['ratio']:.2f}** | {r['max_relative_error']:.1e} |")
    if a.out is not None:
        a.out.write_text(json.dumps({"rows": rows, "torch": torch.__version__}, indent=2) + "\n")


if __name__ == "__main__":
    main()
