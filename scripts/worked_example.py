"""The worked example of docs/user-data.md: scikit-learn's bundled digits as a CSV file, MIM and a
VAE trained on it with the command line, then used through the latent tools, the scikit-learn
estimator and the HTTP service.

    .venv/bin/python scripts/worked_example.py            # about 5 minutes on 2 shared cores
    .venv/bin/python scripts/worked_example.py --quick    # a smoke run (30 epochs)

Writes OUT (default results/user-data): digits.csv, the runs mim/ and vae/ (with their latent/
outputs), summary.json; and the figure docs/user-data/digits.png (not with --quick).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARCH = ["-s", "model.z_dim=10", "-s", "model.hidden=256"]  # the same for MIM and the VAE
PAIRS = "0:1,2:3"  # test rows to interpolate between


def torchmim(*args: str) -> str:
    """Run the torchmim command line (as a user would) and return its standard output."""
    cmd = [sys.executable, "-m", "torchmim", *args]
    print("$ torchmim " + " ".join(args), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return proc.stdout


def write_csv(path: Path) -> None:
    """The 1,797 8x8 digits of scikit-learn as grey levels in [0, 1] (pixel / 16) with a label
    column: the file a user would bring."""
    import pandas as pd
    from sklearn.datasets import load_digits

    d = load_digits()
    frame = pd.DataFrame(d.data / 16.0, columns=[f"p{i}" for i in range(64)])
    frame["digit"] = d.target
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def train(csv: Path, out: Path, objective: str, epochs: int) -> None:
    if (out / "metrics.json").is_file():
        print(f"{out} is done; skipping", flush=True)
        return
    torchmim("train", "-s", "data.name=file", "-s", f"data.path={csv}",
             "-s", "data.label_column=digit", "-s", "data.image_shape=[8,8]",
             "-s", "data.likelihood=bernoulli", "-s", f"objective.name={objective}", *ARCH,
             "-s", f"train.epochs={epochs}", "-s", "train.patience=20",
             "--out", str(out), "--no-progress")


def measure(run_dir: Path) -> dict:
    """The numbers of the comparison, from the run's files and the latent tools."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    from sklearn.neighbors import KNeighborsClassifier

    from torchmim import latent
    from torchmim.io import load_model
    from torchmim.runs import RunConfig

    model = load_model(run_dir / "model.pt")
    config = RunConfig.from_file(run_dir / "config.yaml")
    splits = config.data.load(seed=config.seed)
    (x_tr, y_tr), (x_te, y_te) = splits.train_eval, splits.test
    flat = lambda t: t.reshape(len(t), -1).numpy()  # noqa: E731 - raw rows (grey levels)
    z_tr, z_te = latent.encode(model, flat(x_tr)).numpy(), latent.encode(model, flat(x_te)).numpy()
    knn = KNeighborsClassifier(5).fit(z_tr, y_tr.numpy()).score(z_te, y_te.numpy())
    z_all = np.concatenate([z_tr, z_te])
    y_all = np.concatenate([y_tr.numpy(), y_te.numpy()])
    ari = adjusted_rand_score(y_all, KMeans(10, n_init=10, random_state=0).fit_predict(z_all))
    rec = latent.decode(model, latent.encode(model, flat(x_te))).reshape(len(x_te), -1).numpy()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"knn_acc_mean_codes": knn, "kmeans_ari": ari,
            "recon_rmse_grey": float(np.sqrt(((rec - flat(x_te)) ** 2).mean())),
            "nll": metrics["nll"], "mi": metrics["mi"], "knn_acc_sampled_codes": metrics["knn_acc"],
            "active_units": metrics["active_units"], "epochs": metrics["epochs"],
            "n_train": len(x_tr), "n_test": len(x_te)}


def estimator(csv: Path, quick: bool) -> dict | None:
    """torchmim.sklearn.MIMEncoder in a Pipeline with a k-NN classifier (the same split)."""
    try:
        from torchmim.sklearn import MIMEncoder
    except ImportError:
        return None
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline

    from torchmim.data import FileDataConfig

    splits = FileDataConfig(path=str(csv), label_column="digit", likelihood="bernoulli").load()
    (x_tr, y_tr), (x_te, y_te) = splits.train_eval, splits.test
    pipe = make_pipeline(MIMEncoder(n_components=10, hidden=256, likelihood="bernoulli",
                                    epochs=30 if quick else None,
                                    random_state=0), KNeighborsClassifier(5))
    start = time.perf_counter()
    pipe.fit(x_tr.numpy(), y_tr.numpy())
    return {"pipeline_knn_acc": pipe.score(x_te.numpy(), y_te.numpy()),
            "fit_seconds": time.perf_counter() - start}


def service(run_dir: Path, csv: Path) -> dict | None:
    """`torchmim serve` on 127.0.0.1: /encode of three rows equals the latent tools' codes."""
    import httpx
    import pandas as pd

    from torchmim import latent
    from torchmim.io import load_model

    if "serve" not in torchmim("--help"):
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(run_dir / "serve.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "torchmim", "serve", str(run_dir), "--host",
                             "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300  # a loaded machine may take long to import torch
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"torchmim serve did not start; see {run_dir / 'serve.log'}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        rows = pd.read_csv(csv).drop(columns="digit").to_numpy()[:3]
        z = np.asarray(httpx.post(url + "/encode", json={"x": rows.tolist()}).json()["z"])
        want = latent.encode(load_model(run_dir / "model.pt"), rows).numpy()
        bad = httpx.post(url + "/encode", json={"x": [[0.5] * 63]}).status_code
        return {"encode_shape": list(z.shape), "max_abs_diff_vs_latent_encode":
                float(np.abs(z - want).max()), "wrong_shape_status": bad}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def figure(out: Path, path: Path) -> None:
    """Test digits, their MIM and VAE reconstructions, and spherical interpolations."""
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from torchmim.figures.images import plot_image_rows

    rows = []
    for name in ("mim", "vae"):
        interp = np.load(out / name / "latent" / "interpolate.npz")
        for (i, j), strip in zip(interp["pairs"], interp["x"]):
            rows.append((f"{name.upper()} {i}→{j}", torch.tensor(strip.reshape(-1, 1, 8, 8))))
    from torchmim import latent
    from torchmim.io import load_model
    from torchmim.runs import RunConfig

    config = RunConfig.from_file(out / "mim" / "config.yaml")
    x_te = config.data.load(seed=config.seed).test[0][:16].reshape(16, -1)
    recs = [("data", x_te.reshape(-1, 1, 8, 8))]
    for name in ("mim", "vae"):
        model = load_model(out / name / "model.pt")
        recs.append((f"{name.upper()} recon.",
                     latent.decode(model, latent.encode(model, x_te)).reshape(-1, 1, 8, 8)))
    fig = plot_image_rows(recs + rows, nrow=16,
                          title="digits, test rows: data and reconstructions (posterior means); "
                                "spherical interpolations between test rows 0→1 and 2→3")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "user-data")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    out, epochs = args.out, (30 if args.quick else 300)
    csv = out / "digits.csv"
    write_csv(csv)
    summary: dict = {"command": "python scripts/worked_example.py" + (" --quick" * args.quick)}
    for name in ("mim", "vae"):
        train(csv, out / name, name, epochs)
        run = str(out / name)
        torchmim("latent", "interpolate", run, "--pairs", PAIRS, "--steps", "16",
                 "--method", "spherical")
        torchmim("latent", "neighbors", run, "--index", "0,1,2", "-k", "7")
        torchmim("latent", "sample", run, "--index", "0,1", "--radius", "1.0", "-n", "7")
        summary[name] = measure(out / name)
    summary["estimator"] = estimator(csv, args.quick)
    summary["service"] = service(out / "mim", csv)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    if not args.quick:
        figure(out, ROOT / "docs" / "user-data" / "digits.png")


if __name__ == "__main__":
    main()
