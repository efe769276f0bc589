"""Plugins: a data set, prior, network layer and objective registered in the user's own package
reach the CLI through a ``torchmim.plugins`` entry point of an installed distribution, or through
``torchmim --import MODULE``."""

from __future__ import annotations

import importlib.metadata
import json
import sys
import uuid

import pytest
from click.testing import CliRunner

from torchmim import registry
from torchmim.cli import main
from torchmim.data import DATASETS
from torchmim.distributions import PRIORS

pytestmark = pytest.mark.usefixtures("one_thread")

PLUGIN = '''
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Independent, Laplace
from torch.utils.data import TensorDataset

from torchmim.data import DATASETS, DataConfig, DataSplits
from torchmim.distributions import PRIORS, Prior
from torchmim.networks import ACTIVATIONS
from torchmim.objectives import OBJECTIVES
from torchmim.objectives.baselines import VAE


@DATASETS.register("TAG-ring")
@dataclass
class Ring(DataConfig):
    n: int = 120

    def load(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        a = torch.rand(self.n, generator=g) * 6.2832
        x = torch.stack([a.cos(), a.sin()], 1) + 0.05 * torch.randn(self.n, 2, generator=g)
        y = (a > 3.1416).long()
        return DataSplits(train=TensorDataset(x[:80], y[:80]), val=(x[80:100], y[80:100]),
                          test=(x[100:], y[100:]), train_eval=(x[:80], y[:80]), x_shape=(2,),
                          num_classes=2)


@PRIORS.register("TAG-laplace")
class LaplacePrior(Prior):
    def __init__(self, shape, scale=1.0):
        super().__init__()
        self.register_buffer("loc", torch.zeros(shape))
        self.register_buffer("scale", torch.full((shape,), float(scale)))

    def forward(self):
        return Independent(Laplace(self.loc, self.scale), 1)


class Sine(nn.Module):
    def forward(self, x):
        return torch.sin(x)


ACTIVATIONS.register("TAG-sine", Sine)


@OBJECTIVES.register("TAG-vae")
@dataclass(frozen=True)
class MyVAE(VAE):
    pass
'''


@pytest.fixture
def isolated(monkeypatch):
    """Plugins not yet loaded, the environment and sys.path restored afterwards."""
    monkeypatch.setitem(registry._plugin_state, "loaded", False)
    monkeypatch.setenv(registry.PLUGINS_ENV, "0")
    monkeypatch.setenv(registry.IMPORT_ENV, "")  # (delenv of an unset variable is not undone)
    monkeypatch.setattr(sys, "path", list(sys.path))
    tag = "p" + uuid.uuid4().hex[:8]
    yield tag
    for name in [m for m in sys.modules if m.startswith(tag)]:
        monkeypatch.delitem(sys.modules, name)


def install(site, dist: str, module: str, source: str, entry: str) -> None:
    """A package as pip installs it: the module plus a .dist-info with its entry points."""
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(source)
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[torchmim.plugins]\n{entry}\n")


def train_args(tag: str, out) -> list[str]:
    return ["train", "--out", str(out), "--no-progress", "-s", f"data.name={tag}-ring",
            "-s", f"model.prior={tag}-laplace", "-s", f"model.activation={tag}-sine",
            "-s", f"objective.name={tag}-vae", "-s", "model.hidden=8", "-s", "train.epochs=1",
            "-s", "eval.nll_samples=5"]


def test_entry_point_plugin_is_loaded_by_the_cli(isolated, tmp_path, monkeypatch):
    # breaks if the CLI does not load installed entry points before resolving names
    tag = isolated
    site = tmp_path / "site"
    install(site, f"{tag}-dist", f"{tag}_plugin", PLUGIN.replace("TAG", tag),
            f"mine = {tag}_plugin")
    monkeypatch.syspath_prepend(str(site))
    eps = importlib.metadata.entry_points(group=registry.PLUGIN_GROUP)
    assert f"{tag}_plugin" in [ep.value for ep in eps]  # really discoverable as installed
    assert f"{tag}-ring" not in DATASETS  # nothing loaded before the CLI asks

    res = CliRunner().invoke(main, train_args(tag, tmp_path / "run"))
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["n_test"] == 20 and "knn_acc" in metrics
    assert f"{tag}-laplace" in PRIORS


def test_import_option_and_a_function_entry_point(isolated, tmp_path, monkeypatch):
    # --import finds a module in the current folder and records it for worker processes (while
    # the command runs: the data set's load, in the command, sees it); an entry point naming a
    # function is called
    tag = isolated
    seen = PLUGIN.replace("    def load(self, seed=0):\n",
                          "    def load(self, seed=0):\n        import os\n"
                          "        SEEN.append(os.environ.get('TORCHMIM_IMPORT'))\n")
    (tmp_path / f"{tag}_mod.py").write_text("SEEN = []\n" + seen.replace("TAG", tag))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["--import", f"{tag}_mod", *train_args(tag, tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert f"{tag}_mod" in sys.modules[f"{tag}_mod"].SEEN[0].split(",")
    assert registry.os.environ[registry.IMPORT_ENV] == ""  # restored after the command

    site = tmp_path / "site2"
    install(site, f"{tag}-fn", f"{tag}_fn", "CALLED = []\ndef register():\n    CALLED.append(1)\n",
            f"fn = {tag}_fn:register")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(registry._plugin_state, "loaded", False)
    assert "fn" in registry.load_plugins()
    assert sys.modules[f"{tag}_fn"].CALLED == [1]


def test_broken_plugin_is_one_line(isolated, tmp_path, monkeypatch):
    # a plugin that fails to import names itself in one line, exit status 2
    tag = isolated
    site = tmp_path / "site"
    install(site, f"{tag}-bad", f"{tag}_bad", "raise RuntimeError('boom')\n", f"bad = {tag}_bad")
    monkeypatch.syspath_prepend(str(site))
    res = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "r"), "-s",
                                    "train.epochs=1"])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "plugin 'bad'" in res.output and "boom" in res.output

    res = CliRunner().invoke(main, ["--import", f"{tag}_nothere", "config"])
    assert res.exit_code == 2 and "No module named" in res.output
