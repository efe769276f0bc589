"""The fast CPU paths of issue 11 against the plain implementation they replace.

* fused gated layers (one conv / linear with 2·out outputs, then split) and channels-last conv
  stacks: same values and gradients as the two-map, NCHW form (``torchmim.layers.fast_paths``);
* the blocked importance-sampled NLL with p(z) built once per call: the same estimate, on the same
  random stream, as torchmim 0.1's implementation (``torchmim._reference.nll_0_1``);
* the folded-tanh MLP (sigmoid units, factors folded into the weights) used without autograd:
  the same function as the tanh network;
* the glibc allocator setting: applied once, a no-op when opted out.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import torchmim as tm
from torchmim._reference import nll_0_1
from torchmim.layers import FAST_PATHS, GatedConv2d, GatedDense, fast_paths, to_conv_layout

from .helpers import tiny

PLAIN = {"fused_gates": False, "channels_last": False, "gated_channels_last": False,
         "folded_tanh": False}
FAST = {"fused_gates": True, "channels_last": True, "gated_channels_last": True,
        "folded_tanh": True}
TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


def _value_and_grads(module: torch.nn.Module, x: torch.Tensor, **switches):
    x = x.detach().clone().requires_grad_()
    with fast_paths(**switches):
        y = module(x)
    # a weighting that is not symmetric in the outputs, so a swapped h/g or channel shows up
    w = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    grads = torch.autograd.grad((y * w).sum(), [x, *module.parameters()])
    return y.detach(), grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_gated_dense_equals_two_linears(dtype):
    torch.manual_seed(0)
    layer = GatedDense(7, 5).to(dtype)
    x = torch.randn(3, 4, 7, dtype=dtype)  # extra leading dimensions, as nn.Linear
    y0, g0 = _value_and_grads(layer, x, **PLAIN)
    y1, g1 = _value_and_grads(layer, x, **FAST)
    assert y1.shape == (3, 4, 5)
    torch.testing.assert_close(y1, y0, rtol=TOL[dtype], atol=TOL[dtype])
    for a, b in zip(g1, g0, strict=True):
        torch.testing.assert_close(a, b, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("geometry", [(3, 1, 1), (3, 2, 1), (5, 1, 2), (7, 1, 3)])
def test_fused_channels_last_gated_conv_equals_two_convs(dtype, geometry):
    torch.manual_seed(0)
    k, s, p = geometry
    layer = GatedConv2d(3, 6, k, s, p).to(dtype)
    x = torch.randn(4, 3, 12, 12, dtype=dtype)
    y0, g0 = _value_and_grads(layer, x, **PLAIN)
    for switches in (FAST, {**FAST, "channels_last": False}):
        with fast_paths(**switches):
            xin = to_conv_layout(x)
        assert xin.is_contiguous(memory_format=torch.channels_last) == switches["channels_last"]
        y1, g1 = _value_and_grads(layer, xin, **switches)
        torch.testing.assert_close(y1, y0, rtol=TOL[dtype], atol=TOL[dtype])
        for a, b in zip(g1, g0, strict=True):
            torch.testing.assert_close(a, b, rtol=TOL[dtype], atol=TOL[dtype])


def test_fast_paths_switches_restore_and_defaults():
    # defaults: what bench/image.py measured as a gain (docs/benchmarks.md, issue 11)
    assert (FAST_PATHS.fused_gates, FAST_PATHS.channels_last,
            FAST_PATHS.gated_channels_last, FAST_PATHS.folded_tanh) == (False, True, False, True)
    with fast_paths(fused_gates=True):
        assert FAST_PATHS.fused_gates and FAST_PATHS.channels_last
        with fast_paths(channels_last=False, gated_channels_last=True):
            assert not FAST_PATHS.channels_last and FAST_PATHS.gated_channels_last
        assert FAST_PATHS.channels_last and not FAST_PATHS.gated_channels_last
    assert not FAST_PATHS.fused_gates
    with fast_paths(folded_tanh=False):
        assert not FAST_PATHS.folded_tanh
    assert FAST_PATHS.folded_tanh


# --------------------------------------------------------------------------------- folded tanh
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_folded_tanh_mlp_equals_tanh_mlp(dtype, depth):
    """Without autograd a tanh MLP runs with sigmoid units and folded weights; it must be the same
    function (a wrong fold — e.g. 2W instead of 4W for a middle layer, or a missing −W·1 bias
    shift — is off by O(1), far above these tolerances)."""
    from torchmim.networks import FOLD_MIN_WIDTH, MLP

    torch.manual_seed(0)
    net = MLP(3, 5, hidden=FOLD_MIN_WIDTH, depth=depth).to(dtype)
    with torch.no_grad():  # larger weights than the init, so every unit's tanh is far from linear
        for p in net.parameters():
            p.mul_(3)
    x = torch.randn(4, 6, 3, dtype=dtype)  # leading dimensions as nn.Linear allows
    with torch.no_grad():
        with fast_paths(folded_tanh=False):
            plain = net(x)
        with fast_paths(folded_tanh=True):
            folded = net(x)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(folded, plain, rtol=tol, atol=tol)
    # with autograd the fold runs too (width ≥ FOLD_MIN_WIDTH), differentiated through: the
    # same values and the same gradients for every parameter as the tanh network's
    weights = torch.randn(4, 6, 5, dtype=dtype)
    outs = {}
    from torchmim import networks

    folds = []
    fold = networks.fold_tanh
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(networks, "fold_tanh", lambda p: folds.append(1) or fold(p))
        for fast in (False, True):
            with fast_paths(folded_tanh=fast, affine_backward=fast):
                y = net(x)
            assert len(folds) == int(fast)  # the training forward folded (only) when on
            outs[fast] = (y.detach(),
                          torch.autograd.grad((y * weights).sum(), list(net.parameters())))
    torch.testing.assert_close(outs[False][0], plain, rtol=0, atol=0)  # off: nn.Tanh itself
    torch.testing.assert_close(outs[True][0], plain, rtol=tol, atol=tol)
    torch.testing.assert_close(outs[True][1], outs[False][1], rtol=tol * 10, atol=tol * 10)


def test_folded_weights_are_reused_only_inside_frozen_folds():
    """The IS-NLL folds the weights once for all its decoder blocks (``frozen_folds``); outside
    such a block every call folds afresh, so no change of a parameter — an optimiser step, a
    loaded state dict, ``p.data.mul_()`` (which no version counter sees) — can be missed, and
    nothing is left on the module (a fold kept at rest would go stale after ``.data`` edits and
    break ``copy.deepcopy``/``torch.save`` of vmapped or exported modules)."""
    import copy

    from torchmim.networks import MLP, frozen_folds

    torch.manual_seed(0)
    net = MLP(3, 2, hidden=16, depth=2)
    x = torch.randn(7, 3)

    def check(model, inp):
        with torch.no_grad():
            with fast_paths(folded_tanh=False):
                plain = model(inp)
            folded = model(inp)
        torch.testing.assert_close(folded, plain, rtol=1e-5, atol=1e-5)

    assert net._folded_weights() is not net._folded_weights()  # outside a block: no reuse
    with frozen_folds(net):
        first = net._folded_weights()
        assert net._folded_weights() is first
        with frozen_folds(net):  # nested: the same fold
            assert net._folded_weights() is first
        assert net._folded_weights() is first  # the inner block does not drop the outer's fold
    assert "_fold_frozen" not in net.__dict__
    opt = torch.optim.SGD(net.parameters(), lr=0.5)  # an optimiser step (in-place add_)
    net(x).sum().backward()
    opt.step()
    check(net, x)
    net[0].weight.data.mul_(-3.0)  # invisible to the version counter
    check(net, x)
    net.load_state_dict(MLP(3, 2, hidden=16, depth=2).state_dict())
    check(net, x)
    net.double()
    check(net, x.double())
    copy.deepcopy(net)


def test_the_nll_folds_once_and_equals_the_unfolded_nll():
    # catches: frozen_folds reusing a fold across models, or the NLL not equal with and without it
    from torchmim.networks import MLP

    torch.manual_seed(0)
    model = tm.MLPModelConfig(hidden=40).build()
    x = torch.randn(50, 2)
    calls = []
    original = MLP._folded_weights

    def counting(self):
        out = original(self)
        calls.append((self, out))  # holding the lists keeps their ids unique
        return out

    MLP._folded_weights = counting
    try:
        fast = tm.metrics.importance_sampled_nll(model, x, 300, max_pairs=1000)
    finally:
        MLP._folded_weights = original
    with fast_paths(folded_tanh=False):
        plain = tm.metrics.importance_sampled_nll(model, x, 300, max_pairs=1000)
    assert fast == pytest.approx(plain, rel=1e-6)
    assert len(calls) > 10  # many decoder blocks …
    modules = {id(m) for m, _ in calls}
    assert len({id(out) for _, out in calls}) == len(modules)  # … and one fold per network


@pytest.mark.parametrize(("n_in", "n_out"), [(2, 9), (9, 4), (5, 5)])
def test_affine_backward_is_the_exact_gradient(float64, n_in, n_out):
    """networks.affine's hand-written backward for one weight matrix (leading dimensions of x as
    rows) against finite differences, for a narrow input, a narrow output and a square map; and
    without a gradient wanted for x (the data layer) against autograd's F.linear."""
    from torchmim.networks import _Affine

    torch.manual_seed(0)
    x = torch.randn(3, 4, n_in, requires_grad=True)
    w = torch.randn(n_out, n_in, requires_grad=True)
    b = torch.randn(n_out, requires_grad=True)
    assert torch.autograd.gradcheck(_Affine.apply, (x, w, b))
    y = _Affine.apply(x.detach(), w, b)
    ref = torch.nn.functional.linear(x.detach(), w, b)
    got = torch.autograd.grad(y.pow(2).sum(), (w, b))
    want = torch.autograd.grad(ref.pow(2).sum(), (w, b))
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("shape", "pays"), [((256, 2), True), ((255, 2), False), ((256, 11), False),
                                             ((4, 50), False), ((3, 50, 2), True),
                                             ((3, 4, 50), True), ((3, 5, 2), False),
                                             ((3, 50, 20), False)])
def test_affine_uses_the_hand_written_backward_only_where_it_pays(shape, pays):
    """affine() dispatches by the measured rule (_affine_pays); where it does not pay it is
    F.linear / baddbmm with autograd's own backward."""
    from torchmim.networks import _affine_pays, affine

    w = torch.randn(shape, requires_grad=True)
    b = torch.randn(shape[:-1], requires_grad=True)
    x = torch.randn(*shape[:-2], 6, shape[-1])
    assert _affine_pays(w) is pays
    assert ("Affine" in type(affine(x, w, b).grad_fn).__name__) is pays
    with fast_paths(affine_backward=False):
        assert "Affine" not in type(affine(x, w, b).grad_fn).__name__
        assert ("Affine" in type(affine(x, w, b, fast=True).grad_fn).__name__) is pays
    with torch.no_grad():
        assert affine(x, w, b).grad_fn is None


def test_torch_func_transforms_and_forward_ad_compose_with_the_fast_paths():
    """vmap (with and without autograd), func.grad over functional_call and forward-mode AD of
    an MLP whose layers take the fast paths (width 256: the fold and the 2 → 256 map) give what
    the plain network gives."""
    import torch.autograd.forward_ad as fwAD
    from torch.func import functional_call, grad, vmap

    from torchmim.networks import MLP

    torch.manual_seed(0)
    net = MLP(2, 4, hidden=256).double()
    x = torch.randn(3, 700, 2, dtype=torch.float64)
    plain = lambda inp: torch.nn.Sequential.forward(net, inp)  # noqa: E731
    torch.testing.assert_close(vmap(net)(x), plain(x))
    with torch.no_grad():  # the blocked inference path steps aside (its out= has no batching rule)
        torch.testing.assert_close(vmap(net)(x), plain(x))
    params = dict(net.named_parameters())
    loss = lambda p, inp: functional_call(net, p, (inp,)).pow(2).sum()  # noqa: E731
    got = grad(loss)(params, x[0])
    want = torch.autograd.grad(plain(x[0]).pow(2).sum(), list(params.values()))
    torch.testing.assert_close(list(got.values()), list(want))
    # vmap over stacked weights (torch.func's ensembling idiom): only the weights are wrapped,
    # so the hand-written Function runs under vmap with its generated batching rule
    stacked = {k: torch.stack([v, 1.1 * v]) for k, v in params.items()}
    ensemble = vmap(lambda p: functional_call(net, p, (x[0],)))(stacked)
    for i in range(2):
        member = {k: v[i] for k, v in stacked.items()}
        with torch.nn.utils.stateless._reparametrize_module(net, member):
            torch.testing.assert_close(ensemble[i], plain(x[0]))
    tangent = torch.randn_like(x[0])
    with fwAD.dual_level():
        out = fwAD.unpack_dual(net(fwAD.make_dual(x[0], tangent))).tangent
    want_t = torch.func.jvp(plain, (x[0],), (tangent,))[1]
    torch.testing.assert_close(out, want_t)
    # without autograd too: the inference fast paths (fold, out= blocks) step aside for
    # transforms over the weights and for forward AD (a jvp over the weights was silently 0)
    with torch.no_grad():
        torch.testing.assert_close(
            vmap(lambda p: functional_call(net, p, (x[0],)))(stacked)[1],
            torch.func.functional_call(net, {k: v[1] for k, v in stacked.items()}, (x[0],)))
        tangents = {k: torch.randn_like(v) for k, v in params.items()}
        got_t = torch.func.jvp(lambda p: functional_call(net, p, (x[0],)), (params,), (tangents,))[1]
        with fast_paths(folded_tanh=False, inference_blocks=False):
            want_t = torch.func.jvp(lambda p: functional_call(net, p, (x[0],)), (params,),
                                    (tangents,))[1]
        assert want_t.abs().max() > 0.1
        torch.testing.assert_close(got_t, want_t)
        with fwAD.dual_level():
            out = fwAD.unpack_dual(net(fwAD.make_dual(x.reshape(-1, 2), x.reshape(-1, 2)))).tangent
        torch.testing.assert_close(out, torch.func.jvp(plain, (x.reshape(-1, 2),),
                                                       (x.reshape(-1, 2),))[1])


def test_module_hooks_on_the_layers_turn_the_fast_paths_off():
    """A forward hook or old-style weight_norm (a pre-hook that sets the weight) on a layer must
    still run: the MLP then takes nn.Sequential's forward, with and without autograd."""
    from torchmim.networks import MLP

    torch.manual_seed(0)
    net = MLP(2, 4, hidden=256)
    x = torch.randn(5000, 2)
    seen = []
    handle = net[0].register_forward_hook(lambda *a: seen.append(1))
    net(x)
    with torch.no_grad():
        net(x)
    assert seen == [1, 1]
    handle.remove()
    grads_seen = []
    handle = net[0].register_full_backward_hook(lambda *a: grads_seen.append(1))
    net(x).sum().backward()
    assert grads_seen == [1]  # a gradient monitor on a layer still fires
    handle.remove()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weight_norm is deprecated in favour of parametrize
        torch.nn.utils.weight_norm(net[0])
    with torch.no_grad():
        net[0].weight_g.mul_(3)
        torch.testing.assert_close(net(x), torch.nn.Sequential.forward(net, x), rtol=0, atol=0)
    torch.testing.assert_close(net(x), torch.nn.Sequential.forward(net, x), rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace, as export uses it
def test_training_fast_paths_step_aside_for_autocast_tracing_and_narrow_layers():
    """The MLP's training forward uses the plain modules under autocast (a custom backward would
    mix bfloat16 and float32) and under tracing (exporters see torch's ops), and does not fold a
    network narrower than FOLD_MIN_WIDTH (its forward is then F.linear and nn.Tanh, bit for bit)."""
    from torchmim.networks import FOLD_MIN_WIDTH, MLP

    torch.manual_seed(0)
    x = torch.randn(16, 2)
    narrow = MLP(2, 4, hidden=FOLD_MIN_WIDTH - 1)
    torch.testing.assert_close(narrow(x), torch.nn.Sequential.forward(narrow, x), rtol=0, atol=0)
    wide = MLP(2, 4, hidden=FOLD_MIN_WIDTH)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = wide(x)
    assert y.dtype == torch.bfloat16 and "Affine" not in type(y.grad_fn).__name__
    y.float().sum().backward()  # the plain modules' backward works under autocast
    traced = torch.jit.trace(wide, (x,), check_trace=False)
    graph = str(traced.inlined_graph)
    assert "aten::sigmoid" not in graph and "aten::tanh" in graph
    torch.testing.assert_close(traced(x), torch.nn.Sequential.forward(wide, x), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("value_shape", "param_shape"),
                         [((7, 5, 3), (5, 3)), ((5, 3), (5, 3)), ((3,), (4, 3)), ((6, 1, 3), (4, 3))])
def test_inplace_normal_log_prob_equals_torchs(dtype, value_shape, param_shape):
    """torchmim's Normal computes log_prob in place without autograd: the same values as
    torch.distributions.Normal for broadcasting values and parameters, its inputs untouched; with
    autograd (and with the switch off) it is torch's own computation, bit for bit."""
    from torch.distributions import Normal as TorchNormal

    from torchmim.distributions.normal import Normal

    torch.manual_seed(0)
    loc = torch.randn(param_shape, dtype=dtype)
    scale = torch.rand(param_shape, dtype=dtype) + 0.05
    value = torch.randn(value_shape, dtype=dtype) * 3
    copies = [t.clone() for t in (loc, scale, value)]
    ours, torchs = Normal(loc, scale, validate_args=False), TorchNormal(loc, scale,
                                                                         validate_args=False)
    with torch.no_grad():
        with pytest.MonkeyPatch.context() as mp:  # the fast path never reaches torch's formula
            mp.setattr(TorchNormal, "log_prob", lambda *a: pytest.fail("torch's log_prob ran"))
            fast = ours.log_prob(value)
        with fast_paths(inplace_log_prob=False):
            torch.testing.assert_close(ours.log_prob(value), torchs.log_prob(value), rtol=0, atol=0)
    torch.testing.assert_close(fast, torchs.log_prob(value), rtol=TOL[dtype], atol=TOL[dtype])
    for t, c in zip((loc, scale, value), copies):
        assert torch.equal(t, c)
    loc.requires_grad_()
    y = Normal(loc, scale, validate_args=False).log_prob(value)
    assert y.requires_grad
    torch.testing.assert_close(y, TorchNormal(loc, scale).log_prob(value), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normal_sample_is_torchs_stream_and_floats(dtype):
    """Normal.sample skips torch's σ ≥ 0 scan but draws the same stream and computes the same
    floats (a standard normal draw · σ + μ), for broadcast sample shapes."""
    from torch.distributions import Normal as TorchNormal

    from torchmim.distributions.normal import Normal

    loc, scale = torch.randn(5, 3, dtype=dtype), torch.rand(5, 3, dtype=dtype) + 0.1
    torch.manual_seed(3)
    ours = Normal(loc, scale, validate_args=False).sample((4,))
    torch.manual_seed(3)
    torchs = TorchNormal(loc, scale, validate_args=False).sample((4,))
    assert ours.shape == (4, 5, 3) and ours.dtype == dtype
    assert torch.equal(ours, torchs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [1, 2, 3, 8, 10])
@pytest.mark.parametrize("event_ndims", [0, 1, 2])
def test_diagonal_normal_equals_torchs_independent(dtype, d, event_ndims):
    """diagonal_normal's log_prob adds the columns of a short event dimension without autograd,
    and skips μ = 0, σ = 1 for the standard normal: torch's Independent(Normal) up to rounding
    (bit for bit for the standard shortcut's terms), and torch's own with autograd."""
    from torch.distributions import Independent
    from torch.distributions import Normal as TorchNormal

    from torchmim.distributions.normal import diagonal_normal

    g = torch.Generator().manual_seed(d)
    loc = torch.randn(6, d, dtype=dtype, generator=g)
    scale = torch.rand(6, d, dtype=dtype, generator=g) + 0.1
    value = 3 * torch.randn(4, 6, d, dtype=dtype, generator=g)
    ref = Independent(TorchNormal(loc, scale), event_ndims).log_prob(value)
    with torch.no_grad():
        fast = diagonal_normal(loc, scale, event_ndims).log_prob(value)
    assert fast.shape == ref.shape
    torch.testing.assert_close(fast, ref, rtol=TOL[dtype], atol=4 * TOL[dtype])
    zeros, ones = torch.zeros(6, d, dtype=dtype), torch.ones(6, d, dtype=dtype)
    with torch.no_grad():
        standard = diagonal_normal(zeros, ones, event_ndims, standard=True).log_prob(value)
        general = diagonal_normal(zeros, ones, event_ndims).log_prob(value)
        assert torch.equal(standard, general)
        # a value that broadcasts up against the parameters: the general formula
        row = value[0, 0]
        assert diagonal_normal(zeros, ones, event_ndims, standard=True).log_prob(row).shape \
            == general[0].shape
    loc.requires_grad_()
    y = diagonal_normal(loc, scale, event_ndims).log_prob(value)
    assert y.requires_grad
    torch.testing.assert_close(y, ref, rtol=0, atol=0)


def test_folded_tanh_only_for_tanh_networks():
    from torchmim.networks import MLP

    torch.manual_seed(0)
    assert MLP(2, 2, hidden=8)._tanh and not MLP(2, 2, hidden=8, activation="swish")._tanh
    assert not MLP(2, 2, depth=0)._tanh  # a single linear map: nothing to fold
    net = MLP(2, 3, hidden=8, activation="swish")
    x = torch.randn(5, 2)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net[2](torch.nn.functional.silu(net[0](x))))


# ------------------------------------------------------------------------- blocked MLP inference
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("activation", "depth", "folded"),
                         [("tanh", 1, True), ("tanh", 3, True), ("tanh", 2, False),
                          ("swish", 2, False)])
def test_blocked_mlp_inference_equals_unblocked(monkeypatch, dtype, activation, depth, folded):
    """Without autograd an MLP runs many rows in row blocks with reused activation buffers; row for
    row it must compute what one unblocked call computes (a wrong slice, a stale buffer row or a
    block written to the wrong place is off by O(1)). Blocks of 7 rows over 45: the last block is
    partial, and every buffer is reused several times."""
    from torchmim import networks
    from torchmim.networks import MLP

    monkeypatch.setattr(networks, "INFERENCE_BLOCK", 7 * 40)  # 7 rows of the 40-wide layers
    monkeypatch.setattr(networks, "INFERENCE_MIN_ROWS", 1)
    torch.manual_seed(0)
    net = MLP(3, 5, hidden=40, depth=depth, activation=activation).to(dtype)
    x = torch.randn(5, 9, 3, dtype=dtype)  # leading dimensions are flattened and restored
    calls = []
    run = networks._run_layers
    monkeypatch.setattr(networks, "_run_layers", lambda *a: calls.append(len(a)) or run(*a))
    # torch's blocked path (torchmim.native's kernel replaces it where it applies: off here)
    with torch.no_grad(), fast_paths(folded_tanh=folded, native_kernels=False):
        with fast_paths(inference_blocks=False):
            plain = net(x)
        assert calls == [2]
        blocked = net(x)
    assert calls[1:] == [3] * 7  # ceil(45 / 7) blocks, each into the buffers
    assert blocked.shape == plain.shape == (5, 9, 5)
    torch.testing.assert_close(blocked, plain, rtol=TOL[dtype], atol=TOL[dtype])


def test_blocked_mlp_inference_under_autocast(monkeypatch):
    """Under bf16 autocast the blocks run without the float32 buffers (an out= product would
    silently run in float32): the same values as one autocast call."""
    from torchmim import networks
    from torchmim.networks import MLP

    monkeypatch.setattr(networks, "INFERENCE_BLOCK", 8 * 16)
    monkeypatch.setattr(networks, "INFERENCE_MIN_ROWS", 1)
    torch.manual_seed(0)
    net = MLP(2, 4, hidden=16)
    x = torch.randn(30, 2)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        blocked = net(x)
        with fast_paths(inference_blocks=False):
            plain = net(x)
    assert blocked.dtype == plain.dtype == torch.bfloat16
    torch.testing.assert_close(blocked, plain, rtol=0, atol=0)


def test_the_nll_decodes_whole_chunks_through_blocked_mlps():
    """An MLP decoder blocks its own hidden layers, so the IS-NLL hands it 65,536 pairs per call
    (2¹⁸ floats of the toy decoder's 4 outputs), not 256; other decoders keep blocks sized by
    their widest linear layer. The estimate is the same (the same draws)."""
    torch.manual_seed(0)
    model = tm.MLPModelConfig(hidden=500).build()
    assert model._decoder_block_pairs() == 65536
    with fast_paths(inference_blocks=False):
        assert model._decoder_block_pairs() == 256  # before: 65536 // 500, floored at 256
    image = tiny("image-mlp")  # gated dense layers, no MLP: blocks by its widest layer (64 pixels)
    assert image._decoder_block_pairs() == 65536 // 64
    with fast_paths(inference_blocks=False):
        assert image._decoder_block_pairs() == 65536 // 64
    x, _ = tm.paper_2d_mixture().sample(300, seed=0)
    with fast_paths(native_kernels=False):  # torch's blocked decoder (tests/test_native.py: the kernel)
        blocked = tm.metrics.importance_sampled_nll(model, x, 200, reduction="none")
        with fast_paths(inference_blocks=False):
            plain = tm.metrics.importance_sampled_nll(model, x, 200, reduction="none")
    np.testing.assert_allclose(blocked, plain, rtol=1e-6, atol=1e-6)


def test_state_dict_keys_unchanged_by_fusion():
    """The fusion is on the fly: saved models keep the h/g parameters (old files load, new files
    load in torchmim 0.1, and per-parameter gradient normalisation is unchanged)."""
    keys = set(GatedConv2d(2, 3, 3).state_dict())
    assert keys == {"h.weight", "h.bias", "g.weight", "g.bias"}
    assert set(GatedDense(2, 3).state_dict()) == {"h.weight", "h.bias", "g.weight", "g.bias"}


@pytest.mark.parametrize("name,prior,objective", [
    ("convhvae", "normal", "vae"), ("convhvae", "vampprior", "mim"),
    ("pixelhvae", "normal", "amim"), ("image-mlp", "vampprior", "mim"),
])
def test_image_model_losses_and_gradients_equal_plain(name, prior, objective):
    """A whole training loss and every parameter's gradient, fast vs plain (float64, same noise);
    the 28×28 shape of the paper's models so that the real conv geometries run."""
    torch.manual_seed(0)
    model = tiny(name, x_shape=(1, 28, 28), prior=prior).double().train()
    x = torch.bernoulli(torch.full((6, 1, 28, 28), 0.3, dtype=torch.float64))
    model.initialize_from_data(x)
    f = tm.get_objective(objective)
    results = []
    for switches in (PLAIN, FAST):
        torch.manual_seed(1)
        with fast_paths(**switches):
            loss = f(model, x, 1.0).loss
        results.append((loss.detach(), torch.autograd.grad(loss, list(model.parameters()),
                                                           allow_unused=True)))
    (l0, g0), (l1, g1) = results
    torch.testing.assert_close(l1, l0, rtol=1e-12, atol=1e-10)
    for a, b in zip(g1, g0, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_channels_last_decoder_logits_equal_and_shaped():
    torch.manual_seed(0)
    model = tiny("convhvae", x_shape=(2, 28, 28)).eval()
    z = torch.randn(3, 4, 5)
    with fast_paths(**PLAIN):
        a = model.decoder.logits(z)
    with fast_paths(**FAST):
        b = model.decoder.logits(z)
    assert b.shape == a.shape == (3, 4, 2, 28, 28)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------- IS-NLL
@pytest.mark.parametrize("name,prior", [
    ("toy", "normal"), ("convhvae", "normal"), ("convhvae", "vampprior"), ("pixelhvae", "normal"),
])
def test_nll_equals_0_1_implementation_on_the_same_stream(name, prior):
    """Same seed → the same draws: the blocked estimate (several decoder blocks per chunk, several
    chunks, several batches sharing one p(z)) equals the old one up to float rounding."""
    torch.manual_seed(0)
    if name == "toy":
        model = tm.MLPModelConfig(hidden=16).build()
        x, _ = tm.paper_2d_mixture().sample(37, seed=0)
        x = torch.as_tensor(x, dtype=torch.float32)
    else:
        model = tiny(name, prior=prior)
        x = torch.bernoulli(torch.full((9, 1, 8, 8), 0.4))
        model.initialize_from_data(x)
    kwargs = {"batch_size": 4, "max_pairs": 40}  # 10 samples per chunk, 3 batches
    with fast_paths(**PLAIN):
        old = nll_0_1(model, x, 23, **kwargs)
    with fast_paths(**FAST):
        new = tm.metrics.importance_sampled_nll(model, x, 23, **kwargs)
    # block_pairs 12 → 3 samples per decoder call: blocks that do not divide the chunks
    lml = model.log_marginal_likelihood
    model.log_marginal_likelihood = lambda *a, **k: lml(*a, block_pairs=12, **k)
    try:
        blocked = tm.metrics.importance_sampled_nll(model, x, 23, **kwargs)
    finally:
        del model.log_marginal_likelihood
    assert math.isfinite(old)
    assert new == pytest.approx(old, rel=1e-6, abs=1e-5)
    assert blocked == pytest.approx(old, rel=1e-6, abs=1e-5)


def test_nll_builds_the_prior_once_per_call(monkeypatch):
    torch.manual_seed(0)
    model = tiny("convhvae", prior="vampprior")
    calls = []
    forward = type(model.prior).forward
    monkeypatch.setattr(type(model.prior), "forward",
                        lambda self: calls.append(1) or forward(self))
    tm.metrics.importance_sampled_nll(model, torch.bernoulli(torch.full((10, 1, 8, 8), 0.5)), 5,
                                      batch_size=3)
    assert len(calls) == 1


def test_log_marginal_likelihood_rejects_bad_block():
    model = tm.MLPModelConfig(hidden=4).build()
    with pytest.raises(ValueError, match="block_pairs"):
        model.log_marginal_likelihood(torch.zeros(2, 2), 3, block_pairs=0)


# --------------------------------------------------------------------------------------- allocator
def test_allocator_setting_applied_once_and_opt_out():
    from torchmim import allocator

    first = allocator.keep_freed_memory()
    assert allocator.keep_freed_memory() is first  # idempotent, cached
    if sys.platform.startswith("linux") and os.path.exists("/lib/x86_64-linux-gnu/libc.so.6"):
        assert first  # glibc: mallopt accepted both settings
    code = "from torchmim.allocator import keep_freed_memory as k; print(k())"
    env = {**os.environ, "TORCHMIM_DEFAULT_MALLOC": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
