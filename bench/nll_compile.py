"""Does ``torch.compile`` speed up the toy IS-NLL's log-weights? (issue 11; measured, not used)

    python bench/nll_compile.py

The log importance weight log p(x|z) + log p(z) − log q(z|x) of the toy model (2 → width tanh → 4)
for 256 points × S samples, eager (today's path: folded-tanh MLP under inference mode) against
``torch.compile`` of the same function (inductor, C++ codegen), one thread, with the compile time.
"""

from __future__ import annotations

import time

import torch

from torchmim.runs import RunConfig


def main() -> None:
    torch.set_num_threads(1)
    for width in (5, 500):
        cfg = RunConfig.from_dict({"model": {"name": "mlp", "hidden": width, "activation": "tanh"},
                                   "data": {"name": "gmm2d"}})
        model = cfg.model.build().eval()
        x = cfg.data.load(seed=0).test[0][:256]

        def log_w(x: torch.Tensor, eps: torch.Tensor, model=model) -> torch.Tensor:
            q = model.posterior(x)
            z = q.base_dist.loc + q.base_dist.scale * eps
            s, b = z.shape[0], x.shape[0]
            x_rep = x.unsqueeze(0).expand(s, b, 2).reshape(s * b, 2)
            return (model.decoder(z.reshape(s * b, 2)).log_prob(x_rep).reshape(s, b)
                    + model.prior().log_prob(z) - q.log_prob(z))

        eps = torch.randn(64 if width == 500 else 256, 256, 2)
        with torch.inference_mode():
            start = time.perf_counter()
            compiled = torch.compile(log_w, dynamic=False)
            compiled(x, eps)
            compile_s = time.perf_counter() - start
            for name, fn in (("eager", log_w), ("compiled", compiled)):
                fn(x, eps)
                start = time.perf_counter()
                for _ in range(20):
                    fn(x, eps)
                ns = (time.perf_counter() - start) / 20 / eps.shape[0] / 256 * 1e9
                print(f"width {width}: {name} {ns:.1f} ns per (x, z) pair"
                      + (f" (compile {compile_s:.1f} s)" if name == "compiled" else ""))
            diff = (log_w(x, eps) - compiled(x, eps)).abs().max().item()
            print(f"width {width}: max |compiled − eager| {diff:.2g}")


if __name__ == "__main__":
    main()
