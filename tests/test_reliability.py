"""Run and sweep folders that cannot be corrupted (issue 13): atomic files, the log rows a
checkpoint covers, locks, resume rules, truthful divergence, sweeps without orphans or aborts.

Each test names the defect it keeps closed. The ``kill -9`` tests run real subprocesses, bounded in
time; everything else runs in this process (a lock held by "another process" is simulated by a
second ``flock`` on the lock file, which conflicts even within one process).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

import torchmim as tm
from torchmim.cli import main
from torchmim.config import apply_overrides
from torchmim.errors import CheckpointError, ConfigError, TrainingDivergedError
from torchmim.experiments import load_sweep_file, run_sweep
from torchmim.experiments import runner as runner_mod
from torchmim.io import atomic_write_json, clean_temporaries, read_json
from torchmim.locking import LOCK_NAME, FolderLock, FolderLockedError
from torchmim.runs import RunConfig, run
from torchmim.training.callbacks import Callback

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["data.n_train=256", "data.n_val=128", "data.n_test=128", "eval.nll_samples=5",
        "eval.max_points=128", "model.hidden=4", "train.epochs=5", "train.warmup_epochs=1",
        "train.early_stopping=false", "train.progress=false"]
ROOT = Path(__file__).resolve().parents[1]


def _config(*extra: str) -> RunConfig:
    return RunConfig.from_dict(apply_overrides({}, TINY + list(extra)))


def _rows(folder: Path) -> list[dict[str, str]]:
    """history.csv without the wall-clock column."""
    import csv

    with (folder / "history.csv").open(newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def _strict(text: str) -> object:
    def refuse(token: str) -> None:
        raise ValueError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


class Crash(Callback):
    """Raises (like a kill) at the start or end of an epoch: at the end of epoch e it comes after
    the checkpoint and before the CSV log (user callbacks run before the run's CSVLogger)."""

    def __init__(self, epoch: int, where: str) -> None:
        self.epoch, self.where = epoch, where

    def on_epoch_start(self, trainer, epoch):
        if self.where == "start" and epoch == self.epoch:
            raise KeyboardInterrupt

    def on_epoch_end(self, trainer, epoch, logs):
        if self.where == "end" and epoch == self.epoch:
            raise KeyboardInterrupt


# ------------------------------------------------------------------------------- files, log rows
def test_a_row_lost_between_checkpoint_and_log_comes_back_on_resume(tmp_path):
    """Defect: a kill between the checkpoint's rename and the history.csv append lost that epoch's
    row forever. Now the resume rewrites the log from the checkpoint's history."""
    full = run(_config(), tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        run(_config(), tmp_path / "cut", callbacks=[Crash(2, "end")])
    assert len(_rows(tmp_path / "cut")) == 1  # epoch 2 is checkpointed but not logged
    resumed = run(_config(), tmp_path / "cut", resume=True)
    assert _rows(tmp_path / "cut") == _rows(tmp_path / "full")  # epochs 1..5, each once
    assert [r["epoch"] for r in _rows(tmp_path / "cut")] == ["1", "2", "3", "4", "5"]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_log_rows_after_the_checkpoint_are_dropped_on_resume(tmp_path):
    """Defect class: rows of epochs the checkpoint does not hold (checkpoint_every=2, a kill in
    epoch 4) must not stay next to the recomputed ones (no duplicated epoch 3)."""
    run(_config(), tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        run(_config("train.checkpoint_every=2"), tmp_path / "cut", callbacks=[Crash(4, "start")])
    assert [r["epoch"] for r in _rows(tmp_path / "cut")] == ["1", "2", "3"]
    run(_config("train.checkpoint_every=2"), tmp_path / "cut", resume=True)
    assert _rows(tmp_path / "cut") == _rows(tmp_path / "full")


def test_every_run_file_is_whole_and_metrics_are_strict_json(tmp_path):
    """Defects: metrics.json was written in place (a kill left 0 bytes) and `best_val_loss` was
    written as Infinity when every epoch was in warm-up (invalid strict JSON). Atomic writes leave
    no temporary file behind, and the files keep the umask's mode (mkstemp alone gives 0600)."""
    out = tmp_path / "run"
    result = run(_config("train.epochs=1", "train.warmup_epochs=3"), out)
    assert result.metrics["best_val_loss"] is None
    metrics = _strict((out / "metrics.json").read_text())
    assert metrics["best_val_loss"] is None and metrics["epochs"] == 1
    _strict((out / "environment.json").read_text())
    assert RunConfig.from_file(out / "config.yaml").to_dict() == result.config.to_dict()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "metrics.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_json_is_strict_and_read_json_survives_a_cut_file(tmp_path):
    """Defect: a 0-byte metrics.json raised JSONDecodeError on every read."""
    atomic_write_json(tmp_path / "m.json", {"a": float("inf"), "b": [float("nan"), 1.5]})
    assert _strict((tmp_path / "m.json").read_text()) == {"a": None, "b": [None, 1.5]}
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "cut.json").write_text('{"mi": 0.')
    assert read_json(tmp_path / "empty.json") is None and read_json(tmp_path / "cut.json") is None
    assert read_json(tmp_path / "missing.json") is None


def test_stale_temporary_files_are_cleaned_on_resume(tmp_path):
    """Defect: temporary files of interrupted atomic writes were never removed."""
    out = tmp_path / "run"
    run(_config(), out)
    stale = [out / ".checkpoint.pt.x1y2.tmp", out / ".metrics.json.tmp", out / ".history.csv.a.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    keep = out / "notes.tmp"  # not a temporary of ours (not hidden): left alone
    keep.write_text("mine")
    run(_config(), out, resume=True)
    assert not any(p.exists() for p in stale) and keep.exists()
    assert clean_temporaries(tmp_path / "nowhere") == []


# ------------------------------------------------------------------------------- used folders
def test_train_into_a_used_folder_needs_resume_or_overwrite(tmp_path):
    """Defect: `train` into an existing run folder without --resume appended to history.csv
    (epochs 1,2,1,2). Now it is refused in one line; --overwrite starts clean."""
    out = tmp_path / "run"
    run(_config(), out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != LOCK_NAME}
    with pytest.raises(ConfigError, match="already holds a run .*--resume.*--overwrite"):
        run(_config(), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()
            if p.is_file() and p.name != LOCK_NAME} == before
    with pytest.raises(ConfigError, match="exclude each other"):
        run(_config(), out, resume=True, overwrite=True)
    run(_config("train.epochs=2", "seed=3"), out, overwrite=True)
    assert [r["epoch"] for r in _rows(out)] == ["1", "2"]
    assert RunConfig.from_file(out / "config.yaml").seed == 3

    runner = CliRunner()
    args = ["train", "--out", str(out), "--no-progress", *[a for t in TINY for a in ("-s", t)]]
    res = runner.invoke(main, args)
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "already holds a run" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert [r["epoch"] for r in _rows(out)] == ["1", "2", "3", "4", "5"]


# ------------------------------------------------------------------------------- resume rules
@pytest.mark.parametrize("change, key", [
    ("seed=1", "seed"), ("train.lr=0.01", "train.lr"), ("data.n_train=300", "data.n_train"),
    ("model.hidden=6", "model.hidden"), ("objective.name=vae", "objective.name"),
    ("eval.nll_samples=7", "eval.nll_samples"),
])
def test_a_resume_that_changes_the_run_is_refused_before_any_file_is_touched(tmp_path, change,
                                                                             key):
    """Defects: --resume after changing the seed, lr or data continued silently and rewrote
    config.yaml; a refused resume (width, objective) had already overwritten config.yaml."""
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(_config(), out, callbacks=[Crash(3, "start")])
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()
             if p.is_file() and p.name != LOCK_NAME}
    with pytest.raises(ConfigError, match=f"--resume would change the run in .*{key} ") as err:
        run(_config(change), out, resume=True)
    assert "\n" not in str(err.value)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()
            if p.is_file() and p.name != LOCK_NAME} == files


def test_a_resume_may_change_the_budget_device_and_logging_and_records_it(tmp_path):
    """Safe changes are allowed (more epochs, max_seconds, device, progress, threads) and recorded
    in resume_log.json; config.yaml then says what the run continued with. An epoch budget below
    what was trained is refused."""
    out = tmp_path / "run"
    run(_config(), out)
    with pytest.raises(CheckpointError, match="already trained 5 epochs"):
        run(_config("train.epochs=3"), out, resume=True)
    result = run(_config("train.epochs=7", "train.max_seconds=100", "train.device=cpu",
                         "train.threads=1", "train.progress=true"), out, resume=True,
                 progress=False)
    assert result.metrics["epochs"] == 7 and len(_rows(out)) == 7
    log = _strict((out / "resume_log.json").read_text())
    assert len(log) == 1 and log[0]["from_epoch"] == 5
    assert log[0]["changes"]["train.epochs"] == [5, 7]
    assert log[0]["changes"]["train.max_seconds"] == [None, 100]
    assert set(log[0]["changes"]) == {"train.epochs", "train.max_seconds", "train.threads",
                                      "train.progress"}
    assert RunConfig.from_file(out / "config.yaml").train.epochs == 7


def test_a_checkpoint_without_its_config_is_not_resumed_blindly(tmp_path):
    out = tmp_path / "run"
    run(_config(), out)
    (out / "config.yaml").unlink()
    with pytest.raises(CheckpointError, match="no config.yaml"):
        run(_config(), out, resume=True)
    (out / "config.yaml").write_text("model: {hidden: [")  # cut short by an old version
    with pytest.raises(CheckpointError, match="cannot read the saved config"):
        run(_config(), out, resume=True)


def test_the_trainer_refuses_a_resume_with_other_options(tmp_path):
    """The trainer's own check (for library users of Trainer.fit(resume=True)): a changed
    learning rate or activation is refused, more epochs are not."""
    x = tm.paper_2d_mixture().sample(256, seed=0)[0]
    model = tm.MLPModelConfig(hidden=4).build()
    cfg = tm.TrainerConfig(epochs=2, warmup_epochs=1, progress=False)
    tm.Trainer(model, tm.MIM(), cfg, out_dir=tmp_path).fit(x)
    lr = tm.TrainerConfig(epochs=2, warmup_epochs=1, progress=False, lr=0.1)
    with pytest.raises(CheckpointError, match="lr 0.001 -> 0.1"):
        tm.Trainer(tm.MLPModelConfig(hidden=4).build(), tm.MIM(), lr, out_dir=tmp_path).fit(
            x, resume=True)
    with pytest.raises(CheckpointError, match="another model .*activation"):
        tm.Trainer(tm.MLPModelConfig(hidden=4, activation="relu").build(), tm.MIM(), cfg,
                   out_dir=tmp_path).fit(x, resume=True)
    more = tm.TrainerConfig(epochs=3, warmup_epochs=1, progress=False)
    history = tm.Trainer(tm.MLPModelConfig(hidden=4).build(), tm.MIM(), more,
                         out_dir=tmp_path).fit(x, resume=True)
    assert [h["epoch"] for h in history] == [1, 2, 3]


# ------------------------------------------------------------------------------- divergence
class Poison(Callback):
    """Sets every weight to NaN at the start of epoch ``epoch``: the next loss is non-finite."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.epoch:
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p.fill_(float("nan"))


def test_divergence_messages_tell_the_truth(tmp_path):
    """Defect: divergence at epoch 1 said the last good checkpoint '(epoch 0) was left intact'
    though no such file exists."""
    with pytest.raises(TrainingDivergedError, match="no checkpoint was written yet") as err:
        run(_config(), tmp_path / "a", callbacks=[Poison(1)])
    assert "epoch 0" not in str(err.value) and not (tmp_path / "a" / "checkpoint.pt").exists()
    with pytest.raises(TrainingDivergedError, match=r"checkpoint \(epoch 2\) was left intact at"):
        run(_config("train.checkpoint_every=2"), tmp_path / "b", callbacks=[Poison(4)])
    assert tm.io.read_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 2
    with pytest.raises(TrainingDivergedError, match="no checkpoint is written"):
        run(_config(), None, callbacks=[Poison(1)])


def test_a_nan_validation_loss_in_warm_up_is_never_a_good_checkpoint(tmp_path, monkeypatch):
    """Defect: a NaN validation loss during warm-up was accepted and checkpointed as good."""
    monkeypatch.setattr(tm.Trainer, "evaluate_loss", lambda self, *a, **k: float("nan"))
    with pytest.raises(TrainingDivergedError, match=r"validation loss nan at epoch 1 \(β=0.333"):
        run(_config("train.warmup_epochs=3"), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_vectorised_group_says_the_same_truth(tmp_path, monkeypatch):
    """The vectorised trainer (sweeps' default) had the same two defects: 'epoch 0 ... left
    intact' and a NaN validation loss in warm-up taken as good."""
    from torchmim.training import vectorized

    monkeypatch.setattr(vectorized.VectorizedTrainer, "_val_loss",
                        lambda self, p, vals, members, *a: torch.full((len(members),), math.nan))
    configs = [_config("train.warmup_epochs=3", f"seed={s}") for s in (0, 1)]
    results = vectorized.run_group(configs, [tmp_path / "a", tmp_path / "b"], resume=True)
    for r in results:
        assert isinstance(r, TrainingDivergedError)
        assert "validation loss at epoch 1; no checkpoint was written yet" in str(r)
    assert not (tmp_path / "a" / "checkpoint.pt").exists()


# ------------------------------------------------------------------------------- locks
def _hold(folder: Path, pid: int = 4242, host: str = "elsewhere") -> int:
    """Hold ``folder``'s lock as another process would (a second open file description)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": pid, "host": host, "command": "torchmim train"}).encode())
    return fd


def test_a_second_writer_gets_a_one_line_error_naming_folder_and_holder(tmp_path):
    """Defect: two writers into one folder ran at once (config of one, weights of the other)."""
    out = tmp_path / "run"
    fd = _hold(out)
    try:
        with pytest.raises(FolderLockedError, match=f"run folder {out} is in use by process 4242 "
                                                    "on elsewhere") as err:
            run(_config(), out)
        assert "\n" not in str(err.value)
        assert not (out / "config.yaml").exists()
        with pytest.raises(FolderLockedError, match="sweep folder"):
            run_sweep(_spec(tmp_path), out, workers=1, progress=False, figures=False)
    finally:
        os.close(fd)
    run(_config("train.epochs=1"), out)  # released: the next writer goes ahead


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    """A lock file left by a dead process (no flock held) does not block; it is rewritten with the
    new holder. The lock is re-entrant within a process and released by its last holder."""
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": 999999, "host": "gone"}))
    with FolderLock(out) as lock, FolderLock(out):
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    fd = _hold(out)  # released: another process can take it now
    os.close(fd)


def test_an_unusable_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot use .*file/run as a run folder"):
        run(_config(), tmp_path / "file" / "run")


# ------------------------------------------------------------------------------- sweeps
def _spec(tmp_path: Path, seeds: str = "[0, 1]"):
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(f"""\
        description: tiny
        base:
          data: {{name: gmm, means: [[0, 0], [2, 2]], std: 0.3, n_train: 200, n_val: 100,
                  n_test: 100}}
          model: {{hidden: 4}}
          train: {{epochs: 2, warmup_epochs: 1}}
          eval: {{nll_samples: 5, max_points: 100}}
        grid:
          seed: {seeds}
        x: seed
        """))
    return load_sweep_file(path)


def test_a_cut_metrics_file_in_a_sweep_cell_is_rerun_not_a_crash(tmp_path):
    """Defect: a sweep whose cell had a 0-byte metrics.json crashed on every rerun."""
    spec = _spec(tmp_path)
    first = run_sweep(spec, tmp_path / "s", workers=1, progress=False, figures=False,
                      vectorize=False)
    cell = tmp_path / "s" / "cells" / first.cells[0].id
    (cell / "metrics.json").write_text("")
    again = run_sweep(spec, tmp_path / "s", workers=1, progress=False, figures=False,
                      vectorize=False)
    assert again.complete and [r["mi"] for r in again.rows] == [r["mi"] for r in first.rows]
    assert _strict((cell / "metrics.json").read_text())["epochs"] == 2


@pytest.mark.parametrize("vectorize", [False, True])
def test_an_unexpected_error_in_a_cell_fails_that_cell_only(tmp_path, monkeypatch, vectorize):
    """Defect: one cell raising anything but torchmim's errors aborted the whole sweep with a
    traceback and wrote no results.csv or failure list. Now the cell fails with its traceback in
    its folder, the others finish, and the CLI lists the failures and exits non-zero."""
    spec = _spec(tmp_path, seeds="[0, 1, 2]")
    real_run, real_group = runner_mod.run, runner_mod.run_group

    def flaky_run(config, out, **kw):
        if config.seed == 1:
            raise ZeroDivisionError("a bug in cell 1")
        return real_run(config, out, **kw)

    def flaky_group(configs, outs, **kw):
        raise ZeroDivisionError("a bug in the group")

    monkeypatch.setattr(runner_mod, "run", flaky_run)
    if vectorize:
        spec = _spec(tmp_path, seeds="[0, 1]")
        monkeypatch.setattr(runner_mod, "run_group", flaky_group)
    result = run_sweep(spec, tmp_path / "s", workers=1, progress=False, figures=False,
                       vectorize=vectorize)
    failed = {c.id for c in result.cells if (c.config.seed == 1 or vectorize)}
    assert set(result.failures) == failed and len(result.rows) == len(result.cells) - len(failed)
    assert json.loads((tmp_path / "s" / "failures.json").read_text()).keys() == failed
    for cell_id in failed:
        assert "ZeroDivisionError: a bug" in result.failures[cell_id]
        assert "ZeroDivisionError" in (tmp_path / "s" / "cells" / cell_id /
                                       "traceback.txt").read_text()
    # the rerun retries the failed cells (and removes their tracebacks once they succeed)
    monkeypatch.setattr(runner_mod, "run", real_run)
    monkeypatch.setattr(runner_mod, "run_group", real_group)
    assert run_sweep(spec, tmp_path / "s", workers=1, progress=False, figures=False,
                     vectorize=vectorize).complete
    assert not any((tmp_path / "s" / "cells" / c / "traceback.txt").exists() for c in failed)


def test_the_sweep_command_prints_the_failures_and_exits_non_zero(tmp_path, monkeypatch):
    spec = _spec(tmp_path)
    monkeypatch.setattr(runner_mod, "run", lambda config, out, **kw: 1 / 0)
    res = CliRunner().invoke(main, ["sweep", str(tmp_path / "tiny.yaml"), "--out",
                                    str(tmp_path / "s"), "--workers", "1", "--no-progress",
                                    "--no-vectorize"])
    assert res.exit_code == 1
    for cell in runner_mod.expand(spec):
        assert f"failed: {cell.id}: ZeroDivisionError" in res.output


def test_a_vectorised_cell_with_a_changed_config_fails_alone(tmp_path):
    """A group checks each cell's folder as run(resume=True) does: a cell whose checkpoint was
    made with another config fails; the others train."""
    spec = _spec(tmp_path)
    cells = runner_mod.expand(spec)
    other = cells[0].config.to_dict()
    other["train"]["lr"] = 0.01
    with pytest.raises(KeyboardInterrupt):
        run(RunConfig.from_dict(other), tmp_path / "s" / "cells" / cells[0].id,
            callbacks=[Crash(2, "start")])
    result = run_sweep(spec, tmp_path / "s", workers=1, progress=False, figures=False)
    assert set(result.failures) == {cells[0].id} and "train.lr" in result.failures[cells[0].id]
    assert len(result.rows) == 1


def test_a_dead_worker_fails_its_cells_instead_of_aborting_the_sweep(tmp_path, monkeypatch):
    """A worker that dies breaks the process pool: the executor yields the error as the result of
    that payload and of every one still waiting (it used to raise out of the sweep), and the
    runner records them as failed cells. A fake pool stands in for the processes."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from torchmim.experiments import executors

    class DyingPool:
        def __init__(self, *args, **kwargs):
            self.broken = False

        def submit(self, fn, payload):
            if self.broken:
                raise BrokenProcessPool("a child process terminated abruptly")
            fut = Future()
            if payload == "die":
                self.broken = True
                fut.set_exception(BrokenProcessPool("a child process terminated abruptly"))
            else:
                fut.set_result(fn(payload))
            return fut

        def shutdown(self, **kwargs):
            pass

    monkeypatch.setattr(executors, "ProcessPoolExecutor", DyingPool)
    got = dict(executors.LocalProcessExecutor(1).map(str.upper, ["a", "die", "b"]))
    assert got["a"] == "A" and isinstance(got["die"], BrokenProcessPool)
    assert isinstance(got["b"], BrokenProcessPool)

    class Dead(executors.Executor):
        def map(self, fn, payloads):
            for p in payloads:
                yield p, BrokenProcessPool("a child process terminated abruptly")

    result = run_sweep(_spec(tmp_path), tmp_path / "s", executor=Dead(), progress=False,
                       figures=False)
    assert len(result.failures) == 2 and not result.rows
    assert all("BrokenProcessPool" in e for e in result.failures.values())


# ------------------------------------------------------------------------------- kill -9
def _wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}


def test_kill_9_mid_training_resumes_to_the_uninterrupted_result_and_locks_out_a_second_writer(
        tmp_path):
    """A real `torchmim train` is killed with SIGKILL right after its first checkpoint. While it
    runs, a second writer into its folder gets the lock error naming its PID; after the kill its
    stale lock is taken over, and the resumed run equals an uninterrupted one bit for bit
    (weights, history rows, metrics)."""
    long = [*TINY, "train.epochs=80"]
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "torchmim", "train", "--out", str(out), "--no-progress",
         *[a for t in long for a in ("-s", t)]],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: (out / "checkpoint.pt").exists() or proc.poll() is not None, 120,
                  "the first checkpoint")
        with pytest.raises(FolderLockedError, match=f"in use by process {proc.pid} "):
            run(RunConfig.from_dict(apply_overrides({}, long)), out, resume=True)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (out / "metrics.json").exists()  # it was really interrupted mid-training
    config = RunConfig.from_dict(apply_overrides({}, long))
    resumed = run(config, out, resume=True)
    full = run(config, tmp_path / "full")
    assert _rows(out) == _rows(tmp_path / "full") and len(_rows(out)) == 80
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    drop = {"eval_seconds", "train_seconds"}
    assert {k: v for k, v in resumed.metrics.items() if k not in drop} == \
        {k: v for k, v in full.metrics.items() if k not in drop}


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_a_sweep_parent_leaves_no_live_workers(tmp_path):
    """Defect: `kill -9` of the sweep left its workers re-parented to PID 1, training on and then
    blocking forever. Two busy workers (each in a 60 s task) must die within seconds."""
    (tmp_path / "busy.py").write_text(textwrap.dedent("""\
        import time
        from pathlib import Path

        def work(path):
            Path(path).touch()
            time.sleep(60)
        """))
    script = textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import busy
        from torchmim.experiments.executors import LocalProcessExecutor
        for _ in LocalProcessExecutor(2, threads=1).map(busy.work, [{str(tmp_path / 'a')!r},
                                                                   {str(tmp_path / 'b')!r}]):
            pass
        """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        _wait_for(lambda: ((tmp_path / "a").exists() and (tmp_path / "b").exists())
                  or proc.poll() is not None, 120, "both workers to be busy")
        assert proc.poll() is None
        workers = _children(proc.pid)
        assert len(workers) >= 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        _wait_for(lambda: not any(_alive(w) for w in workers), 10, "the workers to die")
    finally:
        if proc.poll() is None:
            proc.kill()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)


def test_yaml_of_a_resumed_run_is_the_config_it_continued_with(tmp_path):
    """config.yaml is written atomically and only after the resume checks (a refused resume leaves
    the original, which `evaluate` then still reads)."""
    out = tmp_path / "run"
    run(_config(), out)
    with pytest.raises(ConfigError):
        run(_config("model.hidden=6"), out, resume=True)
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["hidden"] == 4
    res = CliRunner().invoke(main, ["evaluate", str(out / "model.pt")])
    assert res.exit_code == 0, res.output
