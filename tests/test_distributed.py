"""Data-parallel training (torchmim.training.distributed): torchrun with 2 CPU processes (gloo)
against single-process training with the same global batch, resume under DDP, and the global
batch's divisibility check."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import BatchSampler, RandomSampler

import torchmim as tm
from torchmim.cli import main
from torchmim.errors import ConfigError
from torchmim.training.distributed import GlobalBatchSampler, check_global_batch

from .helpers import ROOT

# ``ae`` is deterministic (z = E[z|x], no sampling), so two processes must give the one-process
# run to float rounding (it leaves the GMM prior's parameters unused: DDP must allow that);
# 259 training points at batch 64 end each epoch with a global batch of three examples, two for
# process 0 and one for process 1 (unweighted, DDP's average of the two means would give them
# other weights than the one-process mean); a first stage (``init``) must be run by every
# process, as rank 0 runs it, before the main stage.
CONFIG = """\
seed: 3
objective: {name: ae}
model: {hidden: 8, prior: gmm}
data: {n_train: 259, n_val: 200, n_test: 300}
train: {epochs: 4, batch_size: 64, warmup_epochs: 1, progress: false}
eval: {max_points: 300, nll_samples: 10}
init: {objective: {name: ae, reconstruction: mse}, epochs: 2}
"""


def test_global_batch_must_divide_among_the_processes():
    # catches: a per-process batch silently rounded (another run on another number of processes)
    assert check_global_batch(128, 4) == 32
    with pytest.raises(ConfigError, match=r"train.batch_size=63 .* multiple of 2 \(e.g. 62\)"):
        check_global_batch(63, 2)


def test_torchrun_with_a_batch_that_does_not_divide_fails_before_any_work(tmp_path, monkeypatch):
    # catches: the check made after the process group (a hang) or after writing the run folder
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    (tmp_path / "c.yaml").write_text(CONFIG)
    result = CliRunner().invoke(main, ["train", str(tmp_path / "c.yaml"), "--out",
                                       str(tmp_path / "run"), "-s", "train.batch_size=63"])
    assert result.exit_code != 0
    assert "train.batch_size=63 is the global batch" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


@pytest.mark.parametrize("n", [257, 256, 1])
def test_the_processes_shares_are_the_single_process_batches(n):
    # catches: shards that are not the single-process batches (another data order than one
    # process), a process with an empty step, or shares that do not add up
    single = torch.Generator().manual_seed(7)
    batches = list(BatchSampler(RandomSampler(range(n), generator=single), 64, drop_last=False))
    shards = []
    for rank in (0, 1):
        sampler = GlobalBatchSampler(n, 64, rank=rank, world_size=2,
                                     generator=torch.Generator().manual_seed(7))
        shards.append(list(sampler))
        assert len(sampler) == len(batches)
    for step, batch in enumerate(batches):
        shares = [GlobalBatchSampler(n, 64, rank=r, world_size=2, generator=None).share(step)
                  for r in (0, 1)]
        assert sum(mine for mine, _ in shares) == len(batch) == shares[0][1]
        got = [i for rank in (0, 1) for i in (shards[rank][step] if shares[rank][0] else [])]
        assert sorted(got) == sorted(batch)
        assert all(shards[rank][step] for rank in (0, 1))  # every process steps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(config, out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           "-m", "torchmim", "train", str(config), "--out", str(out), "--no-progress", *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def _history(folder):
    import pandas as pd

    return pd.read_csv(folder / "history.csv")


def test_two_processes_match_one_process_and_resume_exactly(tmp_path):
    # catches: per-process batches of batch_size (not batch_size / N: another number of steps),
    # gradients not averaged or a last short batch mis-weighted (other weights and losses),
    # losses not all-reduced (rank 0's half only), other data order, files written by several
    # ranks, the other processes skipping the first stage (a hang, or another model), and a
    # resume under DDP that does not continue the run (two launches: 2 epochs, then --resume to 4,
    # against 4 epochs in one process)
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    ddp = tmp_path / "ddp"
    _torchrun(config, ddp, "-s", "train.epochs=2")
    assert len(_history(ddp)) == 2
    done = _torchrun(config, ddp, "--resume")
    assert done.stdout.count("saved to") == 1  # rank 0 alone prints
    single = tm.run(tm.RunConfig.from_file(config), tmp_path / "one", progress=False)

    a, b = _history(ddp), _history(tmp_path / "one")
    assert list(a["epoch"]) == [1, 2, 3, 4] and list(a["steps"]) == list(b["steps"])
    for column in ("train_loss", "val_loss"):
        assert a[column].tolist() == pytest.approx(b[column].tolist(), rel=1e-5)
    model = tm.load_model(ddp / "model.pt")
    for (name, p), q in zip(model.state_dict().items(), single.model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
    assert (ddp / "resume_log.json").is_file() and (ddp / "init" / "model.pt").is_file()
    same = {p.name for p in (tmp_path / "one").iterdir()} | {"resume_log.json"}
    assert {p.name for p in ddp.iterdir()} == same  # one run folder, as one process writes it


_BF16_DDP = """
import os, sys, torch, torch.distributed as dist
torch.set_num_threads(1)
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1])
dist.init_process_group("gloo", rank=0, world_size=1)
import torchmim as tm
from torchmim.training.distributed import DistributedTrainer
from tests.helpers import binary_images, tiny
x = binary_images(96)
losses, bf16 = [], []
for cls in (DistributedTrainer, tm.Trainer):
    torch.manual_seed(0)
    model = tiny("convhvae")
    seen = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda mod, i, o: seen.append(o.dtype == torch.bfloat16))
    t = cls(model, "mim", tm.TrainerConfig(epochs=2, batch_size=32, warmup_epochs=1,
                                           progress=False, precision="bf16-mixed"))
    t.fit(x[:64], x[64:])
    losses.append([h["train_loss"] for h in t.history])
    bf16.append(bool(seen) and all(seen))
dist.destroy_process_group()
print(losses, bf16)
assert bf16 == [True, True], bf16
assert all(abs(a - b) <= 1e-5 * abs(b) for a, b in zip(*losses)), losses
"""


def test_bf16_mixed_under_ddp_matches_the_single_process_trainer(tmp_path):
    # catches: the DDP step outside the autocast region, or the precision check reading terms the
    # DDP share does not carry (every DDP run crashed once on that)
    done = subprocess.run([sys.executable, "-c", _BF16_DDP, str(_free_port())], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
