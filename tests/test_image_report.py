"""scripts/image_report.py: the Markdown report of several image sweep folders."""

from __future__ import annotations

import csv
from pathlib import Path

from torchmim.experiments.images import image_tables, paper_table

from .helpers import load_file


def _script():
    return load_file("scripts/image_report.py")


def _write(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


RUN = {"data": "MNIST", "model": "convHVAE (S)", "seed": 0, "nll": 101.234, "knn_acc": 0.9512,
       "knn_acc_k1": 0.9401, "active_units": 40, "best_epoch": 7, "epochs": 9,
       "train_seconds": 120.4, "eval_seconds": 30.2, "nll_samples": 50, "nll_points": 400,
       "n_train": 1000, "n_test": 500}
CLAIM = {"data": "MNIST", "model": "convHVAE (S)", "seed": 0, "metric": "knn_acc",
         "claim": "higher", "a": "mim", "b": "vae", "n": 500, "a_mean": 0.9512, "b_mean": 0.9311,
         "diff_mean": 0.0201, "ci_low": 0.011, "ci_high": 0.029, "test": "McNemar exact",
         "p": 0.0004, "verdict": "holds", "a_only": 20, "b_only": 10}


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "image-cpu-mnist"
    folder.mkdir()
    # no knn_acc_k3/k10 columns (a sweep without them), an empty knn_acc_k1 and nll_points
    _write(folder / "results.csv", [
        {**RUN, "objective.name": "mim"},
        {**RUN, "objective.name": "vae", "nll": 99.5, "knn_acc": 0.9311, "knn_acc_k1": "",
         "nll_points": ""}])
    _write(folder / "claims_test_points.csv", [
        {**CLAIM, "seed": 1}, CLAIM,
        {**CLAIM, "metric": "nll", "claim": "higher", "a_mean": 101.234, "b_mean": 99.5,
         "diff_mean": 1.734, "ci_low": 1.1, "ci_high": 2.3, "test": "paired t", "p": 0.01,
         "a_only": "", "b_only": ""}])
    return folder


def test_the_report_prints_every_value_and_dashes_for_missing_ones(tmp_path, capsys):
    # fails if an empty CSV field or a sweep without the 1/3/10-NN columns crashed the tables
    # (instead of "–"), if the claims lost their seed or order, or if names were not the
    # library's (metric_label, objective_label)
    assert _script().main([str(_folder(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "101.23" in out and "99.50" in out and "0.951" in out and "0.931" in out
    run_lines = [line for line in out.splitlines() if line.startswith("| MNIST | convHVAE (S) |")]
    mim = next(line for line in run_lines if "| MIM | 0 |" in line)
    vae = next(line for line in run_lines if "| VAE | 0 |" in line)
    assert "| 0.940 | – | 0.951 | – |" in mim and "| 99.50 | – | – | 0.931 | – |" in vae
    assert "| 40 | 7 / 9 | 120 | 30 |" in mim
    assert "1-NN" in out and "5-NN" in out  # metric_label's short names
    claims = [line for line in out.splitlines() if "| MIM vs VAE |" in line]
    assert len(claims) == 3
    # sorted by (data, model, seed, metric): seed 0's knn_acc, nll, then seed 1
    assert [line.split(" | ")[2:4] for line in claims] == [
        ["0", "5-NN acc."], ["0", "NLL (nats)"], ["1", "5-NN acc."]]
    assert "+0.020 [+0.011, +0.029]" in claims[0] and "20 vs 10 discordant" in claims[0]
    assert "+1.73 [+1.10, +2.30]" in claims[1]
    # paper_table's footnote skips the empty nll_points (400 from the other row)
    assert "on 400 test images" in out


def test_a_missing_folder_exits_2_in_one_line(tmp_path, capsys):
    # fails if a folder without results.csv gave a traceback or exit 0
    assert _script().main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "results.csv does not exist" in err and "\n" not in err


def test_paper_table_footnote_skips_missing_counts():
    # fails if a row without nll_samples / with a NaN or empty count crashed int(...)
    rows = [{**RUN, "objective.name": "mim", "nll_samples": float("nan"), "nll_points": ""},
            {**RUN, "objective.name": "vae"}]
    del rows[1]["n_train"]
    text = paper_table(image_tables(), Path("."), rows, [], metric="nll", table=1)
    assert "S = 50 on 400 test images" in text and "fit on 1000 training codes" in text
    only_missing = [{k: v for k, v in rows[0].items() if k != "n_test"}]
    assert "scored on – test codes" in paper_table(image_tables(), Path("."), only_missing, [],
                                                   metric="nll", table=1)


def test_the_same_run_in_two_folders_is_refused(tmp_path, capsys):
    # fails if two folders holding the same (data, model, objective, seed) were averaged as if
    # they were two seeds ("238.83 ± 0.00 (n=2)")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = _folder(tmp_path / "a"), _folder(tmp_path / "b")
    assert _script().main([str(first), str(second)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the folders hold the same run more than once") and "\n" not in err


def test_the_image_sweep_claims_the_side_each_paper_cell_shows():
    # fails if Table 2's one reversed cell (Fashion-MNIST PixelHVAE (S): VAE 0.76 > A-MIM 0.71)
    # were claimed for MIM, or Omniglot's k-NN (no value in the paper) were claimed at all
    from torchmim.experiments.images import PAPER_TABLE2, image_tables, paper_claim_exceptions

    exceptions = paper_claim_exceptions()
    as_set = {(e["where"]["data"], e["where"]["model"], e["metric"], e["claim"])
              for e in exceptions}
    assert ("Fashion-MNIST", "PixelHVAE (S)", "knn_acc", "lower") in as_set
    assert {(d, m) for d, m, metric, c in as_set if metric == "knn_acc" and c is None} == {
        ("Omniglot", m) for m in PAPER_TABLE2["MNIST"]}
    assert not any(metric == "nll" for _, _, metric, _ in as_set)  # Table 1: VAE better in all
    assert len(exceptions) == 5
    spec = image_tables()
    assert spec.claim_exceptions == exceptions and spec.compare == [["mim", "amim"], "vae"]


def test_folders_run_before_a_claims_correction_get_the_current_claims():
    # fails if `torchmim report` or the image backfill judged an old folder on the claims saved
    # in its sweep.json (e.g. fig5's reconstruction side, or image cells without the paper's side)
    from torchmim.experiments import get_sweep, with_current_claims

    old = {"name": "fig5", "grid": {"seed": [0]}, "claims": None, "compare": ["mim", "vae"]}
    new = with_current_claims(old)
    assert "recon_error" not in new["claims"] and new["claim_exceptions"]
    assert new["grid"] == old["grid"] and old["claims"] is None  # the runs' part kept, no mutation
    user = {"name": "my-sweep", "claims": {"mi": "lower"}}
    assert with_current_claims(user) is user
    spec = get_sweep("image-tables")
    stale = type(spec)(name="image-tables", grid=spec.grid)
    assert with_current_claims(stale).claim_exceptions == spec.claim_exceptions
