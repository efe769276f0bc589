"""Networks that regress distribution parameters, and the registries of networks and activations.

The toy experiments of the paper use "two fully connected layers": input → one hidden layer of width
``hidden`` → output, with tanh (Section 6.2) or swish (Appendix D). :class:`MLP` generalises that to
``depth`` hidden layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import native
from .fast_paths import FAST_PATHS
from .registry import Registry

__all__ = ["ACTIVATIONS", "MLP", "activation", "affine", "fold_tanh", "frozen_folds",
           "native_group_mlp"]

#: Activation functions by name (``tanh`` as in Section 6.2, ``swish`` as in Appendix D).
ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("activation")
ACTIVATIONS.register("tanh", nn.Tanh)
ACTIVATIONS.register("relu", nn.ReLU)
ACTIVATIONS.register("swish", nn.SiLU)  # swish(x) = x·sigmoid(x) (Ramachandran et al.) = SiLU
ACTIVATIONS.register("silu", nn.SiLU)
ACTIVATIONS.register("elu", nn.ELU)
ACTIVATIONS.register("softplus", nn.Softplus)
ACTIVATIONS.register("leaky_relu", nn.LeakyReLU)
ACTIVATIONS.register("gelu", nn.GELU)

def activation(name: str) -> nn.Module:
    """A fresh activation module by registry name."""
    return ACTIVATIONS.build(name)


#: Hidden activations per row block of an :class:`MLP`'s inference forward (``FAST_PATHS.
#: inference_blocks``): 2¹⁶ floats, 256 KiB, within the L2 cache of the benchmark machine's cores.
INFERENCE_BLOCK = 1 << 16
#: Fewest rows per block: below ~256 rows the per-call overhead of the matrix products dominates.
INFERENCE_MIN_ROWS = 256
#: Narrowest hidden layer for which a single model's training folds tanh into sigmoid units (and,
#: for a narrow input, uses the affine backward): below it they cost about what they save (one
#: MIM / VAE model, bench/toy_fast_paths.py --only trainer: 1.14–1.21× at width 500 and
#: 0.94–0.98× at 200 with both on; docs/benchmarks.md). Vectorised groups always fold (M members
#: share the fold's ops).
FOLD_MIN_WIDTH = 256

#: Fewest rows for which an inference forward runs :mod:`torchmim.native`'s kernel (a call costs
#: ~10 µs of ctypes set-up, as much as torch's two small products).
NATIVE_MIN_ROWS = 64

#: One layer of an inference forward: weight, bias, and the activation after it (None: none).
_Layer = tuple[Tensor, Tensor | None, Callable[[Tensor], Tensor] | None]


def _sigmoid_(h: Tensor) -> Tensor:
    return h.sigmoid_()


def _sigmoid_layers(folded: list[tuple[Tensor, Tensor]]) -> list[_Layer]:
    """The folded layers with a sigmoid after every hidden one (none after the output)."""
    return [(w, b, _sigmoid_ if k < len(folded) - 1 else None) for k, (w, b) in enumerate(folded)]


def _run_layers(x: Tensor, layers: list[_Layer], buffers: list[Tensor] | None = None) -> Tensor:
    """``x`` through ``layers``; with ``buffers`` (one per hidden layer, at least as many rows as
    ``x``), each hidden layer writes into its buffer instead of a new tensor."""
    h = x
    for k, (w, b, act) in enumerate(layers):
        if buffers is not None and k < len(buffers) and h.dim() == 2 and b is not None:
            h = torch.addmm(b, h, w.t(), out=buffers[k][:h.shape[0]])  # = F.linear(h, w, b)
        else:
            h = F.linear(h, w, b)
        if act is not None:
            h = act(h)
    return h


#: The activations :mod:`torchmim.native`'s kernel has, by module type (``_sigmoid_``: the folded
#: tanh's units; ``type(None)``: no activation after the output layer).
_NATIVE_ACTIVATIONS: dict[Any, int] = {
    _sigmoid_: native.ACTIVATION_CODES["sigmoid"], nn.Sigmoid: native.ACTIVATION_CODES["sigmoid"],
    nn.SiLU: native.ACTIVATION_CODES["silu"], nn.ReLU: native.ACTIVATION_CODES["relu"],
    type(None): native.ACTIVATION_CODES["none"]}


def fold_tanh(params: list[tuple[Tensor, Tensor]]) -> list[tuple[Tensor, Tensor]]:
    """The (weight, bias) of each linear layer of a tanh network → those of the same function
    with sigmoid units, tanh(u) = 2·sigmoid(2u) − 1 folded into the weights: a hidden layer after
    a tanh layer gets 4W and 2(b − W·1), the first layer 2W and 2b, the output layer 2W and
    b − W·1. Weights (out, in) or stacked (M, out, in) with biases (out,) or (M, out).
    Differentiable (training folds on every step; a few ops on the weights only)."""
    folded = []
    for i, (w, b) in enumerate(params):
        if i > 0:  # the input is 2s − 1 with s the previous sigmoid
            w, b = 2 * w, b - w.sum(-1)
        if i < len(params) - 1:  # a sigmoid unit of 2u
            w, b = 2 * w, 2 * b
        folded.append((w, b))
    return folded


class _Affine(torch.autograd.Function):
    """y = x Wᵀ + b, W (out, in) with x (..., in), or stacked W (M, out, in) with x (M, B, in),
    with a backward laid out for the CPU's GEMM. The backward autograd derives computes ∂W = ∂yᵀ x
    and ∂x = ∂y W, both with an output only ``in`` columns wide when the layer reads the 2-D data
    or latent, and for stacked weights (M, in, out)-shaped ∂W of the output layer: MKL's GEMM is
    several times slower on those shapes than on the same products written as ∂W = (xᵀ ∂y)ᵀ
    (narrow input) or ∂yᵀ x (stacked), and ∂x = ∂y W with W in column-major layout (timings in
    docs/benchmarks.md, ``bench/toy_fast_paths.py --only ops``). The same sums in another order:
    equal to autograd's gradients up to float rounding (tests/test_fast_paths.py). A new-style
    Function with a forward-mode rule and a generated vmap rule, so ``torch.func`` transforms
    and ``torch.autograd.forward_ad`` compose with it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, w: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        if w.dim() == 2:
            return F.linear(x, w, b)
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor], output: Tensor) -> None:
        x, w, _ = inputs
        ctx.save_for_backward(x, w)
        ctx.save_for_forward(x, w)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, w = ctx.saved_tensors
        x_shape = x.shape
        narrow = w.shape[-1] < w.shape[-2]  # in < out: the data or the latent
        stacked = w.dim() == 3
        if not stacked:  # leading dimensions as rows
            x, grad = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
        mm = torch.bmm if stacked else torch.mm
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = mm(grad, w.mT.contiguous().mT if narrow else w).reshape(x_shape)
        if ctx.needs_input_grad[1]:
            gw = mm(x.mT, grad).mT.contiguous() if narrow else mm(grad.mT, x)
        if ctx.needs_input_grad[2]:
            gb = grad.sum(-2)
        return gx, gw, gb

    @staticmethod
    def jvp(ctx: Any, x_t: Tensor | None, w_t: Tensor | None, b_t: Tensor | None) -> Tensor:
        x, w = ctx.saved_tensors
        terms = []
        if x_t is not None:
            terms.append(x_t @ w.mT)
        if w_t is not None:
            terms.append(x @ w_t.mT)
        if b_t is not None:
            terms.append(b_t if w.dim() == 2 else b_t.unsqueeze(1))
        out = terms[0]
        for t in terms[1:]:
            out = out + t
        return out


def affine(x: Tensor, w: Tensor, b: Tensor, *, fast: bool | None = None) -> Tensor:
    """``F.linear(x, w, b)`` (or its stacked form, W (M, out, in)) with :class:`_Affine`'s
    backward when ``fast`` (default: ``FAST_PATHS.affine_backward``), the shapes are those where
    it measured faster (:func:`_affine_pays`), the tensors are on the CPU and autograd records
    the op; the plain op under autocast (whose backward would mix dtypes), tracing, compilation
    and ``torch.func`` transforms."""
    if fast is None:
        fast = FAST_PATHS.affine_backward
    if (fast and x.device.type == "cpu" and _affine_pays(w) and torch.is_grad_enabled()
            and not _tracing() and not _transformed(x) and not _autocast_on(x.device.type)):
        return _Affine.apply(x, w, b)
    if w.dim() == 2:
        return F.linear(x, w, b)
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


class _GroupMLP(torch.autograd.Function):
    """σ(x W₁ᵀ + b₁) W₂ᵀ + b₂ for stacked members with σ the sigmoid, forward and backward in
    :mod:`torchmim.native`'s kernels (the hidden activations recomputed in the backward, not
    stored). See :func:`native_group_mlp`."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor,  # type: ignore[override]
                b2: Tensor) -> Tensor:
        ctx.save_for_backward(x, w1, b1, w2)
        return native.group_mlp_forward(x, w1, b1, w2, b2)

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, w1, b1, w2 = ctx.saved_tensors
        return native.group_mlp_backward(x, w1, b1, w2, dy, input_grad=ctx.needs_input_grad[0])


def native_group_mlp(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor | None:
    """The stacked one-hidden-layer sigmoid MLP ``σ(x W₁ᵀ + b₁) W₂ᵀ + b₂`` (x (M, B, I), W₁
    (M, H, I), W₂ (M, O, H)) of a vectorised group's training step and validation loss, forward
    and backward each as one call of :mod:`torchmim.native` (2–7× torch's ``baddbmm`` + ``sigmoid_`` + autograd on the
    fig3 groups' 2 → W → 4 layers, ``bench/native_group_step.py``); ``None`` where that path does
    not apply — ``FAST_PATHS.native_kernels`` off, no compiled kernels, tensors other than float32
    on the CPU, I > ``native.GROUP_MAX_INPUTS`` or O > ``native.GROUP_MAX_OUTPUTS`` (wider layers
    are small GEMMs where torch's products win: 0.8–1.0× on fig4's), under tracing or a
    ``torch.func`` transform — and the caller runs torch's ops. Equal to them up to float
    rounding (tests/test_native.py)."""
    if not (FAST_PATHS.native_kernels and x.dim() == 3 and w1.dim() == 3 and w2.dim() == 3
            and all(t.device.type == "cpu" and t.dtype == torch.float32
                    for t in (x, w1, b1, w2, b2))
            and x.shape[-1] <= native.GROUP_MAX_INPUTS and w2.shape[1] <= native.GROUP_MAX_OUTPUTS
            and not _tracing() and not any(_transformed(t) for t in (x, w1, w2))
            and not _autocast_on("cpu") and native.available()):
        return None
    if not torch.is_grad_enabled():  # the validation loss: the forward kernel alone
        return native.group_mlp_forward(x, w1, b1, w2, b2)
    return _GroupMLP.apply(x, w1, b1, w2, b2)


def _affine_pays(w: Tensor) -> bool:
    """Whether :class:`_Affine`'s backward beats autograd's for weights of this shape, by the
    rule measured on the benchmark machine (batch 128; ``bench/toy_fast_paths.py --only ops``,
    docs/benchmarks.md): one matrix, an input of at most 10 features into at least 256, as the
    fold's ``FOLD_MIN_WIDTH`` (2 → 500: 1.65×, 2 → 200: 1.07×, 2 → 100: 0.78×; for in ≥ out the
    products are autograd's and the Python function only costs ~25 µs); stacked (20 members), a
    side of at most 10 with the other at least 50 (2 → 500: 2.5×, 500 → 4: 2.2×, 50 → 4: 1.4×,
    2 → 50: 1.2×; 20 → 50: 0.86×)."""
    n_out, n_in = w.shape[-2], w.shape[-1]
    if w.dim() == 2:
        return n_in <= 10 and n_out >= FOLD_MIN_WIDTH
    return min(n_in, n_out) <= 10 and max(n_in, n_out) >= 50


def _tracing() -> bool:
    """Inside ``torch.jit.trace``, ``torch.export`` or ``torch.compile``: the plain ops only."""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)  # torch >= 2.3
    if compiling is None:
        compiling = torch._dynamo.is_compiling
    return torch.jit.is_tracing() or compiling()


def _transformed(x: Tensor) -> bool:
    """``x`` is wrapped by a ``torch.func`` transform (vmap, grad, jvp): the plain ops, which
    have batching rules (``out=`` products do not)."""
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return bool(wrapped is not None and wrapped(x))


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return (torch.is_autocast_cpu_enabled() if device_type == "cpu"
                else torch.is_autocast_enabled())


def _forward_ad() -> bool:
    """A ``torch.autograd.forward_ad`` level is open (dual tensors may flow through)."""
    from torch.autograd import forward_ad

    return getattr(forward_ad, "_current_level", -1) >= 0


def _hooked(module: nn.Module) -> bool:
    """Forward or backward hooks on ``module``'s children, or global module hooks (old-style
    ``weight_norm`` / ``spectral_norm`` set the weight in a forward pre-hook; gradient monitors
    use backward hooks): the fast paths read the children's weights directly and would skip
    them."""
    from torch.nn.modules import module as _module

    return bool(_module._global_forward_hooks or _module._global_forward_pre_hooks
                or _module._global_backward_hooks or _module._global_backward_pre_hooks
                or any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                       or m._backward_pre_hooks for m in module.children()))


class MLP(nn.Sequential):
    """Fully connected network: ``depth`` hidden layers of width ``hidden``, then a linear output.

    ``MLP(2, 4, hidden=50)`` is the paper's "two fully connected layers" with tanh.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden: int = 50,
        depth: int = 1,
        activation: str = "tanh",
    ) -> None:
        if depth < 0 or hidden < 1:
            raise ValueError(f"MLP needs depth >= 0 and hidden >= 1, got depth={depth}, hidden={hidden}")
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), ACTIVATIONS.build(activation)]
            width = hidden
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)
        self.in_features, self.out_features = in_features, out_features
        self._tanh = depth > 0 and all(type(m) is nn.Tanh for m in list(self)[1::2])

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if self._plain_only(x):
            return super().forward(x)  # torch.func over the weights (ensembles, jvp), hooks
        if torch.is_grad_enabled():
            return self._training_forward(x)
        rows = x.shape[:-1].numel()
        layers = self._inference_layers()
        # the kernel pays where it fuses the output layer (≤ 8 outputs: 2.3–2.7× torch's ops);
        # a wider output (fig4's 40) was 0.87× (bench/toy_fast_paths.py --only native)
        native_layers = (self._as_native(layers, x) if rows >= NATIVE_MIN_ROWS
                         and self.out_features <= native.FUSED_MAX_OUTPUTS else None)
        if native_layers is not None:
            out = native.mlp_forward(native_layers, x.reshape(rows, x.shape[-1]))
            return out.reshape(*x.shape[:-1], out.shape[-1])
        block = max(INFERENCE_MIN_ROWS, INFERENCE_BLOCK // max(w.shape[0] for w, _, _ in layers[:-1]))
        if not FAST_PATHS.inference_blocks or rows <= block or x.device.type != "cpu":
            return _run_layers(x, layers)
        return self._blocked_forward(x, layers, block)

    def _plain_only(self, x: Tensor) -> bool:
        """Only ``nn.Sequential``'s forward applies: one layer, tracing or compilation, a
        ``torch.func`` transform over the inputs or the weights (ensembles, jvp), forward AD,
        hooks."""
        return (len(self) == 1 or _tracing() or _transformed(x) or _forward_ad() or _hooked(self)
                or any(_transformed(p) for p in self.parameters()))

    def _inference_layers(self) -> list[_Layer]:
        """(weight, bias, activation) per linear layer for an inference forward: the folded
        sigmoid network of a tanh MLP (``FAST_PATHS.folded_tanh``), else the modules' own."""
        if self._tanh and FAST_PATHS.folded_tanh:
            return _sigmoid_layers(self._folded_weights())
        return [(lin.weight, lin.bias, act) for lin, act in
                zip(list(self)[0::2], [*list(self)[1::2], None])]

    def native_layers(self, x: Tensor) -> list[tuple[Tensor, Tensor, int]] | None:
        """The layers as :mod:`torchmim.native`'s kernel takes them, for an inference forward on
        ``x``, where that kernel applies: ``FAST_PATHS.native_kernels``, no autograd, float32 on
        the CPU without autocast, activations it has (sigmoid, folded tanh, SiLU, ReLU), no
        hooks or transforms, the kernels compiled. Else None (torch's ops)."""
        if self._plain_only(x):
            return None
        return self._as_native(self._inference_layers(), x)

    @staticmethod
    def _as_native(layers: list[_Layer], x: Tensor) -> list[tuple[Tensor, Tensor, int]] | None:
        """:meth:`native_layers` for an input that may take the fast paths (``_plain_only``
        checked by the caller), from the layers of :meth:`_inference_layers`."""
        if (not FAST_PATHS.native_kernels or torch.is_grad_enabled() or x.device.type != "cpu"
                or x.dtype != torch.float32 or _autocast_on("cpu") or not native.available()):
            return None
        out = []
        for w, b, act in layers:
            code = _NATIVE_ACTIVATIONS.get(act if act is _sigmoid_ else type(act))
            if (b is None or code is None or w.dtype != torch.float32 or b.dtype != torch.float32
                    or w.device.type != "cpu" or b.device.type != "cpu"):
                return None  # torch's ops, and their errors for mixed devices
            out.append((w, b, code))
        return out

    def _training_forward(self, x: Tensor) -> Tensor:
        """With autograd, on the CPU: a tanh network of width ≥ ``FOLD_MIN_WIDTH`` runs with
        sigmoid units and its weights folded on every call (:func:`fold_tanh`; torch's CPU tanh
        is ~9.5× slower than sigmoid on a 128 × 500 batch here), and every linear map goes
        through :func:`affine`.
        Where neither applies (narrow networks, other devices, autocast: a bfloat16 run keeps
        torch's ops) it is ``nn.Sequential``'s forward."""
        linears = list(self)[0::2]
        fold = (self._tanh and FAST_PATHS.folded_tanh
                and max(lin.out_features for lin in linears[:-1]) >= FOLD_MIN_WIDTH)
        if (x.device.type != "cpu" or _autocast_on(x.device.type) or not (fold or (
                FAST_PATHS.affine_backward and any(_affine_pays(lin.weight) for lin in linears)))):
            return super().forward(x)
        params = [(lin.weight, lin.bias) for lin in linears]
        h = x
        for k, (w, b) in enumerate(fold_tanh(params) if fold else params):
            h = affine(h, w, b)
            if k < len(params) - 1:
                # not in place: F.linear's output may be a view
                h = torch.sigmoid(h) if fold else self[2 * k + 1](h)
        return h

    def _blocked_forward(self, x: Tensor, layers: list[_Layer], block: int) -> Tensor:
        """Inference over many rows (the IS-NLL's decoder: 10⁴–10⁵ (x, z) pairs per call) in
        blocks of ``block`` rows, each block's hidden activations written into one buffer per
        layer that is reused for every block and stays in the CPU caches; only the outputs
        (``out_features`` wide) are materialised for all rows. The same function as unblocked
        up to float rounding (the GEMM may order a block's sums differently: ~1e-7 in float32).
        Measured on the benchmark machine (docs/benchmarks.md): allocating a fresh
        (rows × width) activation per call costs page faults and cache misses that exceed the
        matrix products at width 500."""
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        rows = x2.shape[0]
        out: Tensor | None = None
        buffers: list[Tensor] | None = None
        for i in range(0, rows, block):
            xb = x2[i:i + block]
            if buffers is None and not _autocast_on(x.device.type):
                buffers = [xb.new_empty((block, w.shape[0]), dtype=torch.result_type(xb, w))
                           for w, _, _ in layers[:-1]]
            yb = _run_layers(xb, layers, buffers)
            if out is None:
                out = yb.new_empty((rows, yb.shape[-1]))
            out[i:i + block] = yb
        assert out is not None
        return out.reshape(*shape[:-1], out.shape[-1])

    def _folded_weights(self) -> list[tuple[Tensor, Tensor]]:
        """The folded (weight, bias) of every linear layer: computed on every call, except inside
        :func:`frozen_folds`, which folds once for its block (the IS-NLL's many decoder blocks:
        ~20 µs per fold, 16–21% of a block at width 500)."""
        frozen = self.__dict__.get("_fold_frozen")
        if frozen is not None and frozen[1] is not None:
            return frozen[1]
        with torch.no_grad():
            folded = [(w.detach(), b.detach()) for w, b in
                      fold_tanh([(lin.weight, lin.bias) for lin in list(self)[0::2]])]
        if frozen is not None:
            frozen[1] = folded
        return folded


@contextlib.contextmanager
def frozen_folds(module: nn.Module) -> Iterator[None]:
    """Within the block, every folded-tanh :class:`MLP` in ``module`` folds its weights once and
    reuses them: for a caller that runs the same network many times without changing it (the
    IS-NLL). The weights must not change inside the block. Scoped rather than cached at rest:
    no key (storage address, version counter) can see every way a parameter changes
    (``p.data.mul_()`` bypasses the version counter), and nothing is left on the module to pickle
    or copy. Blocks nest; the fold is dropped when the outermost one ends."""
    mlps = [m for m in module.modules() if isinstance(m, MLP) and m._tanh]
    entered = []
    for m in mlps:
        if m.__dict__.get("_fold_frozen") is None:
            m.__dict__["_fold_frozen"] = [True, None]
            entered.append(m)
    try:
        yield
    finally:
        for m in entered:
            m.__dict__.pop("_fold_frozen", None)
