"""How the saved models here were made: torchmim 0.1.0 at commit f05f987, before the prior registry
was unified (image models then took `prior: standard|vampprior` and `num_pseudo_inputs`).

Kept for the record; it needs that version of torchmim (`git checkout f05f987`), run from the
repository root. tests/test_priors.py checks that these files still load and give the same numbers.
"""

import json
import sys

import torch

import torchmim as tm


def main() -> None:
    sys.path.insert(0, "tests")
    from helpers import tiny

    torch.manual_seed(0)
    out = "tests/data/legacy_v0_1"
    models = {
        "mlp-gmm": tm.build_model(name="mlp", x_dim=2, z_dim=2, hidden=8, prior="gmm",
                                  prior_options={"num_components": 3}),
        "convhvae-vampprior": tiny("convhvae", prior="vampprior"),
        "convhvae-standard": tiny("convhvae", prior="standard"),
        "pixelhvae-vampprior": tiny("pixelhvae", prior="vampprior"),
        "image-mlp-vampprior": tiny("image-mlp", prior="vampprior"),
    }
    ref = {}
    for name, m in models.items():
        tm.save_model(m, f"{out}/{name}.pt")
        m.eval()
        x = torch.rand(4, *m.x_shape).round() if len(m.x_shape) == 3 else torch.randn(4, 2)
        with torch.no_grad():
            torch.manual_seed(1)
            ref[name] = {"x": x.flatten().tolist(), "x_shape": list(x.shape),
                         "z_mean": m.encode(x).flatten().tolist(),
                         "log_pz_at_mean": m.prior().log_prob(m.encode(x)).tolist()}
    with open(f"{out}/reference.json", "w") as f:
        json.dump(ref, f)


# The two run-*.yaml files: RunConfig.from_dict({"model": {"name": "convhvae", "prior":
# "vampprior", "num_pseudo_inputs": 20}, "data": {"name": "mnist"}}).save(...), and image-mlp with
# prior "standard".


if __name__ == "__main__":  # never on import: pytest's module collection must not rewrite these files
    main()
