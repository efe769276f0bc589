"""Networks that regress distribution parameters, and the registries of networks and activations.

The toy experiments of the paper use "two fully connected layers": input → one hidden layer of width
``hidden`` → output, with tanh (Section 6.2) or swish (Appendix D). :class:`MLP` generalises that to
``depth`` hidden layers.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from .registry import Registry

__all__ = ["ACTIVATIONS", "MLP", "activation"]

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

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x)
