"""torchmim.native's fused MLP kernels against torch's ops (issue 11, seventh round).

* the kernel's MLP equals torch's layers (every activation it has, 1–4 layers, fused and unfused
  output layers, row counts that are not a multiple of the 16-row tile), and its Gaussian
  epilogue equals ``gaussian_from_mean_logvar(...).log_prob`` of the repeated targets;
* the same result, bit for bit, however the rows are split across threads;
* extremes: saturated units, an overflowing variance (−inf, as torch), NaN propagates;
* ``MLP`` and the IS-NLL take the kernel by default and equal the torch path;
* no compiler, or ``TORCHMIM_NATIVE=0``: torch's path, with the reason; the compiled library is
  cached and reused across processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import torchmim as tm
from torchmim import native
from torchmim.distributions.conditional import (
    ConditionalGaussian,
    gaussian_from_mean_logvar,
    tiled_log_prob,
)
from torchmim.layers import fast_paths
from torchmim.metrics import importance_sampled_nll
from torchmim.networks import MLP

# the kernel tests need the compiled kernels (a C compiler: CI and the project machines have
# one); the fallback tests below run everywhere
needs_native = pytest.mark.skipif(
    not native.available(), reason=f"torchmim.native unavailable: {native.unavailable_reason()}")

ACTS = {"none": lambda h: h, "sigmoid": torch.sigmoid, "silu": torch.nn.functional.silu,
        "relu": torch.relu}


def _layers(dims: list[int], act: str, seed: int = 0, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for k, (i, o) in enumerate(zip(dims[:-1], dims[1:])):
        w = scale * torch.randn(o, i, generator=g) / i ** 0.5
        b = torch.randn(o, generator=g)
        out.append((w, b, native.ACTIVATION_CODES[act if k < len(dims) - 2 else "none"]))
    return out


def _torch_mlp(layers, x: torch.Tensor, act: str) -> torch.Tensor:
    h = x.double()
    for k, (w, b, _) in enumerate(layers):
        h = h @ w.double().t() + b.double()
        if k < len(layers) - 1:
            h = ACTS[act](h)
    return h


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("dims", [[2, 5, 4], [2, 500, 4], [3, 7, 8], [10, 50, 40], [2, 6],
                                  [4, 9, 11, 4], [2, 30, 20, 10, 3]])
@needs_native
@pytest.mark.parametrize("rows", [1, 17, 1000])
def test_mlp_forward_equals_torch(act, dims, rows):
    layers = _layers(dims, act)
    x = 3 * torch.randn(rows, dims[0], generator=torch.Generator().manual_seed(1))
    out = native.mlp_forward(layers, x)
    ref = _torch_mlp(layers, x, act)
    assert out.shape == (rows, dims[-1]) and out.dtype == torch.float32
    # float32 sums of up to 500 terms against float64: a misplaced tile row or weight is off by
    # far more (1e-4 and up); the polynomials' last digits are pinned by the precision test
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


@needs_native
@pytest.mark.parametrize("dims", [[2, 50, 4], [10, 50, 40], [2, 20, 2]])
@pytest.mark.parametrize("clamp", [None, (-6.0, 2.0)])
@pytest.mark.parametrize("std_floor", [1e-6, 0.1])
def test_gaussian_epilogue_equals_the_distributions_log_prob(dims, clamp, std_floor):
    layers = _layers(dims, "sigmoid", scale=3.0)
    g = torch.Generator().manual_seed(2)
    n, s = 37, 5
    z = 2 * torch.randn(s * n, dims[0], generator=g)
    x = torch.randn(n, dims[-1] // 2, generator=g)
    out = _torch_mlp(layers, z, "sigmoid")
    mean, logvar = out.chunk(2, dim=-1)
    ref = gaussian_from_mean_logvar(mean, logvar, std_floor=std_floor, logvar_clamp=clamp
                                    ).log_prob(x.double().repeat(s, 1))
    ll = native.mlp_gaussian_log_prob(layers, z, x, std_floor=std_floor, logvar_clamp=clamp)
    assert ll.shape == (s * n,)
    torch.testing.assert_close(ll.double(), ref, rtol=2e-6, atol=2e-5)


@needs_native
def test_every_thread_split_gives_the_same_bits():
    layers = _layers([2, 64, 4], "sigmoid")
    z = torch.randn(3 * 7001, 2)  # a period (7001) that no thread split divides evenly
    x = torch.randn(7001, 2)
    threads = torch.get_num_threads()
    try:
        results = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            results.append((native.mlp_forward(layers, z),
                            native.mlp_gaussian_log_prob(layers, z, x, std_floor=1e-6,
                                                         logvar_clamp=None)))
    finally:
        torch.set_num_threads(threads)
    for out, ll in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(ll, results[0][1])
    # and the split rows see their own targets: equal to a one-row-at-a-time evaluation
    single = torch.cat([native.mlp_gaussian_log_prob(layers, z[i::7001], x[i:i + 1],
                                                     std_floor=1e-6, logvar_clamp=None)
                        for i in range(0, 7001, 1000)])
    expected = torch.cat([results[0][1][i::7001] for i in range(0, 7001, 1000)])
    torch.testing.assert_close(single, expected, rtol=0, atol=0)


@needs_native
def test_extremes_saturate_overflow_to_minus_inf_and_propagate_nan():
    w1, b1 = torch.tensor([[1.0], [-1.0]]), torch.zeros(2)
    layers = [(w1, b1, 1), (torch.eye(2), torch.zeros(2), 0)]
    h = native.mlp_forward(layers, torch.tensor([[1000.0], [-1000.0], [float("nan")]]))
    # saturated: 1, and 0 up to a denormal (exp's argument is clamped at 88.4: never inf)
    torch.testing.assert_close(h[:2], torch.tensor([[1.0, 0.0], [0.0, 1.0]]), rtol=0, atol=1e-37)
    assert torch.isnan(h[2]).all()
    # a log-variance whose σ overflows float32: −inf, as torch's Normal
    out = [(torch.tensor([[0.0], [1.0]]), torch.tensor([0.0, 0.0]), 0)]
    z = torch.tensor([[1.0], [200.0], [float("nan")]])
    x = torch.zeros(1, 1)
    ll = native.mlp_gaussian_log_prob(out, z, x, std_floor=1e-6, logvar_clamp=None)
    ref = gaussian_from_mean_logvar(torch.zeros(3, 1), z).log_prob(torch.zeros(3, 1))
    assert ll[1] == ref[1] == -float("inf")
    torch.testing.assert_close(ll[0], ref[0])
    assert torch.isnan(ll[2])


@needs_native
def test_bad_calls_raise():
    layers = _layers([2, 8, 4], "sigmoid")
    with pytest.raises(ValueError, match="tile"):
        native.mlp_gaussian_log_prob(layers, torch.randn(10, 2), torch.randn(3, 2),
                                     std_floor=1e-6, logvar_clamp=None)
    with pytest.raises(ValueError, match="2-D"):  # a 1-D target: no IndexError from inside
        native.mlp_gaussian_log_prob(layers, torch.randn(10, 2), torch.randn(10),
                                     std_floor=1e-6, logvar_clamp=None)
    with pytest.raises(ValueError, match="2-D float32"):
        native.mlp_forward(layers, torch.randn(10, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="chain"):
        native.mlp_forward(layers, torch.randn(10, 3))
    with pytest.raises(ValueError, match="activation"):
        native.mlp_forward([(layers[0][0], layers[0][1], 9), layers[1]], torch.randn(10, 2))


@needs_native
@pytest.mark.parametrize("activation", ["tanh", "swish", "relu"])
@pytest.mark.parametrize("depth", [1, 2])
def test_mlp_inference_takes_the_kernel_and_equals_torch(monkeypatch, activation, depth):
    torch.manual_seed(0)
    mlp = MLP(2, 4, hidden=40, depth=depth, activation=activation)
    x = torch.randn(300, 2)
    calls = []
    kernel = native.mlp_forward
    monkeypatch.setattr(native, "mlp_forward", lambda *a: calls.append(1) or kernel(*a))
    with torch.no_grad():
        fast = mlp(x)
        with fast_paths(native_kernels=False):
            plain = mlp(x)
        small = mlp(x[:10])  # below NATIVE_MIN_ROWS: torch's ops
    assert len(calls) == 1
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(small, plain[:10], rtol=1e-5, atol=1e-5)
    # with autograd, tanh without the fold and GELU (no kernel): torch's ops
    mlp(x)
    with torch.no_grad(), fast_paths(folded_tanh=False):
        mlp(x)
    with torch.no_grad():
        MLP(2, 4, hidden=8, activation="gelu")(x)
    assert len(calls) == 1 + (activation != "tanh")


@needs_native
def test_tiled_log_prob_equals_the_repeated_values():
    torch.manual_seed(0)
    dec = ConditionalGaussian(MLP(2, 6, hidden=30), logvar_clamp=(-6.0, 2.0))
    z, x = torch.randn(4 * 50, 2), torch.randn(50, 3)
    with torch.no_grad():
        fast = tiled_log_prob(dec, x, z)
        with fast_paths(native_kernels=False):
            plain = tiled_log_prob(dec, x, z)
        ref = dec(z).log_prob(x.repeat(4, 1))
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain, ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="tile"):
        tiled_log_prob(dec, torch.randn(7, 3), z)


@needs_native
@pytest.mark.parametrize("width", [5, 200])
@pytest.mark.parametrize("objective_seed", [0, 1])
def test_the_nll_with_the_kernel_equals_the_nll_without(monkeypatch, width, objective_seed):
    torch.manual_seed(objective_seed)
    model = tm.MLPModelConfig(x_dim=2, z_dim=2, hidden=width).build()
    x = torch.as_tensor(tm.paper_2d_mixture().sample(300, seed=objective_seed)[0],
                        dtype=torch.float32)
    calls = []
    kernel = native.mlp_gaussian_log_prob
    monkeypatch.setattr(native, "mlp_gaussian_log_prob",
                        lambda *a, **k: calls.append(1) or kernel(*a, **k))
    fast = importance_sampled_nll(model, x, 200, reduction="none")
    assert calls
    with fast_paths(native_kernels=False):
        plain = importance_sampled_nll(model, x, 200, reduction="none")
    assert abs(fast - plain).max() < 1e-4


def _subprocess(code: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


_PROBE = """
import json, torch
from torchmim import native
from torchmim.networks import MLP
torch.manual_seed(0)
with torch.no_grad():
    y = MLP(2, 4, hidden=20)(torch.randn(200, 2))
print(json.dumps({"available": native.available(), "reason": native.unavailable_reason(),
                  "y": float(y.sum())}))
"""


@needs_native
def test_without_a_compiler_or_when_disabled_torch_runs_it(tmp_path):
    base = _subprocess(_PROBE, TORCHMIM_CACHE_DIR=str(tmp_path / "a"))
    none = _subprocess(_PROBE, CC=str(tmp_path / "no-such-cc"),
                       TORCHMIM_CACHE_DIR=str(tmp_path / "b"))
    off = _subprocess(_PROBE, TORCHMIM_NATIVE="0")
    assert base["available"] and base["reason"] is None
    assert not none["available"] and "no C compiler" in none["reason"]
    assert not off["available"] and "TORCHMIM_NATIVE=0" in off["reason"]
    assert abs(none["y"] - base["y"]) < 1e-4 and none["y"] == off["y"]
    assert not (tmp_path / "b").exists()


@needs_native
def test_the_library_is_cached_and_reused(tmp_path):
    _subprocess(_PROBE, TORCHMIM_CACHE_DIR=str(tmp_path))
    built = list(tmp_path.glob("native-*.so"))
    assert len(built) == 1 and not list(tmp_path.glob("*.tmp"))
    stamp = built[0].stat().st_mtime_ns
    _subprocess(_PROBE, TORCHMIM_CACHE_DIR=str(tmp_path))
    assert list(tmp_path.glob("native-*.so")) == built and built[0].stat().st_mtime_ns == stamp


def test_a_broken_compiler_falls_back(tmp_path):
    cc = tmp_path / "cc"
    cc.write_text("#!/bin/sh\necho 'cc: error: broken' >&2\nexit 1\n")
    cc.chmod(0o755)
    got = _subprocess(_PROBE, CC=str(cc), TORCHMIM_CACHE_DIR=str(tmp_path / "cache"))
    assert not got["available"] and "did not compile" in got["reason"]


@needs_native
def test_grad_mode_and_autocast_keep_torchs_ops():
    mlp = MLP(2, 4, hidden=300)
    x = torch.randn(500, 2)
    assert mlp.native_layers(x) is None  # autograd on
    with torch.no_grad():
        assert mlp.native_layers(x) is not None
        assert mlp.native_layers(x.double()) is None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert mlp.native_layers(x) is None
        handle = mlp[0].register_forward_hook(lambda *a: None)
        assert mlp.native_layers(x) is None
        handle.remove()
    assert isinstance(mlp[1], nn.Tanh)


def test_an_unwritable_cache_falls_back(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    got = _subprocess(_PROBE, TORCHMIM_CACHE_DIR=str(blocker / "cache"))
    assert not got["available"] and "cannot write the cache" in got["reason"]


@needs_native
def test_mlp_with_a_wide_output_keeps_torchs_ops(monkeypatch):
    """Unfused (> FUSED_MAX_OUTPUTS outputs) the kernel measured slower than torch: not used by
    MLP.forward; the Gaussian decoder's IS-NLL density still uses it (it measured faster)."""
    calls = []
    kernel = native.mlp_forward
    monkeypatch.setattr(native, "mlp_forward", lambda *a: calls.append(1) or kernel(*a))
    with torch.no_grad():
        MLP(10, native.FUSED_MAX_OUTPUTS + 1, hidden=50)(torch.randn(300, 10))
        assert not calls
        MLP(10, native.FUSED_MAX_OUTPUTS, hidden=50)(torch.randn(300, 10))
    assert calls == [1]


@needs_native
def test_weights_off_the_cpu_take_torchs_ops_and_errors():
    """The kernel reads raw pointers: weights elsewhere (here 'meta') must never reach it."""
    mlp = MLP(2, 4, hidden=8).to("meta")
    with torch.no_grad():
        assert mlp.native_layers(torch.randn(100, 2)) is None
        with pytest.raises((RuntimeError, NotImplementedError)):
            mlp(torch.randn(100, 2))
    layers = _layers([2, 8, 4], "sigmoid")
    with pytest.raises(ValueError, match="CPU"):
        native.mlp_forward([(layers[0][0].to("meta"), layers[0][1], 1), layers[1]],
                           torch.randn(10, 2))
    with pytest.raises(ValueError, match="2-D"):
        native.mlp_gaussian_log_prob(layers, torch.randn(12, 2), torch.randn(3, 2, 1),
                                     std_floor=1e-6, logvar_clamp=None)
    with pytest.raises(ValueError, match="output layer"):
        native.mlp_forward([layers[0], (layers[1][0], layers[1][1], 1)], torch.randn(10, 2))


@needs_native
def test_tiled_log_prob_honours_hooks_subclasses_and_other_shapes():
    """Where the module's own forward would do something the kernel does not (a hook on the
    decoder or its network, an overridden forward, outputs that broadcast against a wider
    value), tiled_log_prob is the distribution's log_prob."""
    torch.manual_seed(0)
    z, x = torch.randn(4 * 30, 2), torch.randn(30, 2)
    dec = ConditionalGaussian(MLP(2, 4, hidden=20))
    with torch.no_grad():
        ref = dec(z).log_prob(x.repeat(4, 1))
        for module in (dec, dec.network):
            handle = module.register_forward_hook(
                lambda m, i, out: out if isinstance(m, ConditionalGaussian) else out + 1.0)
            hooked = dec(z).log_prob(x.repeat(4, 1))
            torch.testing.assert_close(tiled_log_prob(dec, x, z), hooked)
            handle.remove()
        narrow = ConditionalGaussian(MLP(2, 2, hidden=20))  # 1 mean + 1 log-variance, x in R^3
        x3 = torch.randn(30, 3)
        torch.testing.assert_close(tiled_log_prob(narrow, x3, z),
                                   narrow(z).log_prob(x3.repeat(4, 1)))
    assert not torch.equal(ref, hooked)


@needs_native
def test_huge_inputs_and_a_reversed_clamp_follow_torch():
    w = torch.tensor([[1.0]])
    for code, f in ((1, torch.sigmoid), (2, torch.nn.functional.silu)):
        layers = [(w, torch.zeros(1), code), (torch.eye(1), torch.zeros(1), 0)]
        x = torch.tensor([[1e20], [-1e20], [1e14], [50.0]])
        # saturated sigmoid: 1 exactly, 0 up to 4e-39 (exp's argument is clamped), so SiLU(−1e20)
        # is −4e-19 where torch has −0
        torch.testing.assert_close(native.mlp_forward(layers, x), f(x), rtol=1e-6, atol=1e-18)
    out = [(torch.tensor([[0.0], [1.0]]), torch.tensor([0.0, 0.0]), 0)]
    z, target = torch.tensor([[-3.0], [0.5], [5.0]]), torch.zeros(1, 1)
    for clamp in ((-1.0, 1.0), (1.0, -1.0)):  # torch's clamp gives `high` when low > high
        ll = native.mlp_gaussian_log_prob(out, z, target, std_floor=1e-6, logvar_clamp=clamp)
        ref = gaussian_from_mean_logvar(torch.zeros(3, 1), z, logvar_clamp=clamp).log_prob(
            torch.zeros(3, 1))
        torch.testing.assert_close(ll, ref)


_PORTABLE = """
import json, torch
from torchmim import native
native._FLAG_SETS = ([],)  # no -march: the portable vector-extension code, no AVX-512 intrinsics
from torchmim.networks import fold_tanh
g = torch.Generator().manual_seed(0)
l1, l2 = torch.nn.Linear(2, 50), torch.nn.Linear(50, 4)
f = [(w.detach(), b.detach()) for w, b in fold_tanh([(l1.weight, l1.bias), (l2.weight, l2.bias)])]
layers = [(f[0][0], f[0][1], 1), (f[1][0], f[1][1], 0)]
z, x = 3 * torch.randn(999, 2, generator=g), torch.randn(333, 2, generator=g)
with torch.no_grad():
    ref = l2(torch.tanh(l1(z)))
    out = native.mlp_forward(layers, z)
    ll = native.mlp_gaussian_log_prob(layers, z, x, std_floor=1e-6, logvar_clamp=(-6.0, 2.0))
    mean, logvar = ref.chunk(2, -1)
    from torchmim.distributions.conditional import gaussian_from_mean_logvar
    lref = gaussian_from_mean_logvar(mean, logvar, logvar_clamp=(-6.0, 2.0)).log_prob(x.repeat(3, 1))
print(json.dumps({"available": native.available(), "mlp": float((out - ref).abs().max()),
                  "ll": float(((ll - lref).abs() / lref.abs()).max())}))
"""


_PRECISION = """
import json, torch
from torchmim import native
PORTABLE
# one-to-one layers: the matmul is exact, so what is measured is the kernel's exp, log and
# reciprocal on a dense grid, against float64
x = torch.linspace(-30, 30, 120001).reshape(-1, 1)
one, zero = torch.ones(1, 1), torch.zeros(1)
got = {}
for name, f in (("sigmoid", torch.sigmoid), ("silu", torch.nn.functional.silu)):
    layers = [(one, zero, native.ACTIVATION_CODES[name]), (one, zero, 0)]
    ref = f(x.double())
    got[name] = float(((native.mlp_forward(layers, x).double() - ref).abs() / ref.abs()).max())
lv = torch.linspace(-8, 8, 100001).reshape(-1, 1)  # mean = target: log N = -log(σ) - log(2π)/2
ll = native.mlp_gaussian_log_prob([(torch.tensor([[0.0], [1.0]]), torch.zeros(2), 0)], lv,
                                  torch.zeros(1, 1), std_floor=1e-3, logvar_clamp=None)
sigma = torch.exp(0.5 * lv.double().squeeze(1)) + 1e-3
ref = -torch.log(sigma) - 0.5 * torch.log(torch.tensor(2 * torch.pi, dtype=torch.float64))
got["gaussian"] = float((ll.double() - ref).abs().max())
print(json.dumps(got))
"""


@needs_native
@pytest.mark.parametrize("portable", [False, True])
def test_exp_log_and_reciprocal_are_accurate_to_a_few_ulp(tmp_path, portable):
    """Measured: sigmoid and SiLU within 2.1e-7 relative (3.4 × 2⁻²⁴), the Gaussian log-density
    within 3.6e-7 absolute (its values reach 5, where a float32 step is 4.8e-7). A coefficient
    of the exp or log polynomial wrong in its fourth digit gives 8e-7 and 5.2e-7: this fails."""
    patch = "native._FLAG_SETS = ([],)" if portable else ""
    got = _subprocess(_PRECISION.replace("PORTABLE", patch), TORCHMIM_CACHE_DIR=str(tmp_path))
    assert got["sigmoid"] < 3e-7 and got["silu"] < 3e-7, got
    assert got["gaussian"] < 4.5e-7, got


@needs_native
def test_the_portable_build_equals_torch(tmp_path):
    """The code for compilers without AVX-512 (Arm, older x86): built without -march here."""
    got = _subprocess(_PORTABLE, TORCHMIM_CACHE_DIR=str(tmp_path))
    assert got["available"] and got["mlp"] < 1e-5 and got["ll"] < 1e-5


def test_a_shared_cache_folder_is_not_loaded_from(tmp_path):
    """Compiled code is loaded into the process: never from a folder others can write."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    got = _subprocess(_PROBE, TORCHMIM_CACHE_DIR=str(shared))
    assert not got["available"] and "not private" in got["reason"]
    assert not list(shared.iterdir())


@needs_native
def test_the_group_step_prototype_of_the_benchmark_computes_autograds_gradients(tmp_path):
    """bench/native_group_step.py's C prototype (docs/benchmarks.md, eighth round): its outputs
    and gradients are torch's, so its timings compare like with like."""
    from .helpers import load_file

    bench = load_file("bench/native_group_step.py")
    lib = bench.build(tmp_path)
    for shape in [(3, 2, 5, 4), (2, 20, 7, 8)]:
        assert bench.measure(lib, *shape, b=32)["max_relative_error"] < 1e-5


def _group_tensors(m: int, rows: int, n_in: int, width: int, n_out: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(rows + width)
    return [torch.randn(*s, generator=g, dtype=dtype).requires_grad_() for s in (
        (m, rows, n_in), (m, width, n_in), (m, width), (m, n_out, width), (m, n_out))]


@needs_native
@pytest.mark.parametrize("shape", [(3, 128, 2, 5, 4), (2, 37, 2, 50, 4), (1, 16, 4, 7, 8),
                                   (4, 5, 1, 3, 1), (5, 130, 2, 500, 4)])
@pytest.mark.parametrize("threads", [1, 2])
def test_group_mlp_forward_and_backward_equal_autograds(shape, threads):
    """The vectorised group's native MLP (tail tiles of fewer than 16 rows, members split across
    threads) against torch's baddbmm + sigmoid + autograd in float64."""
    from torchmim.networks import native_group_mlp

    x, w1, b1, w2, b2 = _group_tensors(*shape)
    dy = torch.randn(shape[0], shape[1], shape[4], generator=torch.Generator().manual_seed(9))
    d = [t.detach().double().requires_grad_() for t in (x, w1, b1, w2, b2)]
    ref = torch.baddbmm(d[2].unsqueeze(1), d[0], d[1].mT).sigmoid()
    ref = torch.baddbmm(d[4].unsqueeze(1), ref, d[3].mT)
    ref_grads = torch.autograd.grad(ref, d, dy.double())
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = native_group_mlp(x, w1, b1, w2, b2)
        grads = torch.autograd.grad(y, (x, w1, b1, w2, b2), dy)
    finally:
        torch.set_num_threads(saved)
    assert "_GroupMLP" in type(y.grad_fn).__name__
    with torch.no_grad():  # the forward kernel alone: the same floats
        assert torch.equal(native_group_mlp(x, w1, b1, w2, b2), y.detach())
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads):  # sums over rows of 128: float32 against float64
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max())


def test_group_mlp_steps_aside_where_it_does_not_apply():
    from torchmim.networks import native_group_mlp

    args = _group_tensors(2, 16, 2, 5, 4)
    assert native_group_mlp(*_group_tensors(2, 16, 2, 5, 4, torch.float64)) is None
    assert native_group_mlp(*_group_tensors(2, 16, 20, 5, 4)) is None  # a wide input: GEMMs
    assert native_group_mlp(*_group_tensors(2, 16, 2, 5, 40)) is None  # a wide output
    with fast_paths(native_kernels=False):
        assert native_group_mlp(*args) is None
    seen = []

    def f(w):
        seen.append(native_group_mlp(args[0].detach(), w, *(t.detach() for t in args[2:])))
        return w.sum()

    torch.func.grad(f)(args[1].detach())
    assert seen == [None]  # under a torch.func transform: torch's ops (they have the rules)


@needs_native
def test_group_mlp_rejects_bad_calls():
    x, w1, b1, w2, b2 = (t.detach() for t in _group_tensors(2, 16, 2, 5, 4))
    with pytest.raises(ValueError, match="I <= 4"):
        native.group_mlp_forward(x[..., :1].expand(2, 16, 5).contiguous(), w1, b1, w2, b2)
    with pytest.raises(ValueError, match="b2"):
        native.group_mlp_forward(x, w1, b1, w2, b2[:, :2])
    with pytest.raises(ValueError, match="dy"):
        native.group_mlp_backward(x, w1, b1, w2, torch.zeros(2, 16, 3))


@needs_native
def test_a_group_trains_with_the_native_mlp_as_with_torchs_ops(monkeypatch):
    """Five epochs of a fig3-shaped group (MIM and VAE, width 60, float32) with the kernel and
    with torch's ops: the same training up to float rounding, and the kernel ran."""
    from torchmim.networks import _GroupMLP
    from torchmim.training import TrainerConfig, VectorizedTrainer

    calls: list[int] = []
    apply = _GroupMLP.apply
    monkeypatch.setattr(_GroupMLP, "apply", lambda *a: calls.append(1) or apply(*a))
    data = [torch.as_tensor(tm.paper_2d_mixture().sample(640, seed=s)[0], dtype=torch.float32)
            for s in range(4)]
    cfg = TrainerConfig(epochs=5, warmup_epochs=3, progress=False, min_steps=0)

    def train(kernel: bool) -> VectorizedTrainer:
        models = []
        for i in range(4):
            torch.manual_seed(i)
            models.append(tm.MLPModelConfig(hidden=60).build())
        with fast_paths(native_kernels=kernel):
            vt = VectorizedTrainer(models, [tm.MIM(), tm.VAE()] * 2, cfg, seeds=[0, 1, 2, 3])
            vt.fit(data, data)
        return vt

    fast = train(True)
    assert fast._native and calls
    # below NATIVE_MIN_WIDTH (measured: no gain there), torch's ops
    narrow = VectorizedTrainer([tm.MLPModelConfig(hidden=8).build()], tm.MIM(), cfg, seeds=[0])
    assert not narrow._native and narrow._native_eval  # its validation loss: the kernel
    n = len(calls)
    plain = train(False)
    assert len(calls) == n  # the switch turns it off
    for name in fast.names:
        torch.testing.assert_close(fast.params[name], plain.params[name], rtol=1e-3, atol=1e-4)
    for a, b in zip(fast.members, plain.members):
        assert a.history[-1]["val_loss"] == pytest.approx(b.history[-1]["val_loss"], rel=1e-4)
