"""Networks that regress distribution parameters, and the registries of networks and activations.

The toy experiments of the paper use "two fully connected layers": input → one hidden layer of width
``hidden`` → output, with tanh (Section 6.2) or swish (Appendix D). :class:`MLP` generalises that to
``depth`` hidden layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .layers import FAST_PATHS
from .registry import Registry

__all__ = ["ACTIVATIONS", "MLP", "activation", "frozen_folds"]

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
        if self._tanh and FAST_PATHS.folded_tanh and not torch.is_grad_enabled():
            return self._folded_forward(x)
        return super().forward(x)

    def _folded_forward(self, x: Tensor) -> Tensor:
        """The same function with sigmoid units: tanh(u) = 2·sigmoid(2u) − 1, the factors folded
        into the weights (a hidden layer after a tanh layer gets 4W and 2(b − W·1), the output
        layer 2W and b − W·1). One pass over each hidden activation instead of a tanh, whose CPU
        kernel is ~10× slower than sigmoid's (see ``FAST_PATHS.folded_tanh``). Inference only."""
        h = x
        folded = self._folded_weights()
        for i, (w, b) in enumerate(folded):
            h = F.linear(h, w, b)
            if i < len(folded) - 1:
                h = h.sigmoid_()
        return h

    def _folded_weights(self) -> list[tuple[Tensor, Tensor]]:
        """The folded (weight, bias) of every linear layer: computed on every call, except inside
        :func:`frozen_folds`, which folds once for its block (the IS-NLL's many decoder blocks:
        ~20 µs per fold, 16–21% of a block at width 500)."""
        frozen = self.__dict__.get("_fold_frozen")
        if frozen is not None and frozen[1] is not None:
            return frozen[1]
        folded = []
        with torch.no_grad():
            linears = list(self)[0::2]
            for i, layer in enumerate(linears):
                w, b = layer.weight, layer.bias
                if i > 0:  # the input is 2s − 1 with s = sigmoid(2u): fold the affine map into w, b
                    b = b - w.sum(1)
                    w = 2 * w
                if i < len(linears) - 1:  # a sigmoid unit of 2u
                    w, b = 2 * w, 2 * b
                folded.append((w.detach(), b.detach()))
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
