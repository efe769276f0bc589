"""The HTTP service (torchmim.serving): every endpoint against the library's own functions, bad
input that must get a 4xx (never a 500), batching of concurrent requests, and `torchmim serve`
started for real on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from torchmim import latent
from torchmim.data.transform import DataTransform
from torchmim.io import save_model
from torchmim.models import MLPModelConfig
from torchmim.runs import RunConfig
from torchmim.serving import ModelService, ServeConfig, create_app
from torchmim.trained import load_trained

pytestmark = pytest.mark.usefixtures("one_thread")

X_DIM, Z_DIM, MAX_BATCH = 4, 2, 64


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder: model.pt of a model trained on standardised data (its transform stored with
    it, as `torchmim train` on a file does) and the run's config.yaml."""
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    config = MLPModelConfig(x_dim=X_DIM, z_dim=Z_DIM, hidden=8)
    model = config.build()
    raw = np.random.default_rng(0).normal(size=(50, X_DIM)) * 10.0 + 3.0
    model.data_transform = DataTransform.standardize(raw)
    save_model(model, folder / "model.pt")
    RunConfig(model=config, seed=7).save(folder / "config.yaml")
    return folder


@pytest.fixture(scope="module")
def model(run_dir):
    return load_trained(run_dir).model


@pytest.fixture(scope="module")
def client(run_dir):
    with TestClient(create_app(run_dir, ServeConfig(max_batch=MAX_BATCH))) as c:
        yield c


def rows(n: int, seed: int = 1) -> list[list[float]]:
    return (np.random.default_rng(seed).normal(size=(n, X_DIM)) * 10.0 + 3.0).tolist()


def test_health_and_info(client):
    """/health is 200; /info describes the model, its prior, the run's training config and the
    stored standardisation."""
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["x_shape"] == [X_DIM] and info["z_shape"] == [Z_DIM]
    assert info["model"]["name"] == "mlp" and info["prior"]["name"] == "normal"
    assert info["seed"] == 7 and info["train"]["batch_size"] == 128
    assert info["objective"]["name"] == "mim"
    assert len(info["data_transform"]["shift"]) == X_DIM
    assert info["service"]["max_batch"] == MAX_BATCH


def test_encode_uses_the_stored_standardisation(client, model):
    """/encode gives the posterior means of the *standardised* rows (catches a service that
    feeds raw rows to the encoder), equal to torchmim.latent.encode."""
    x = rows(5)
    z = np.array(client.post("/encode", json={"x": x}).json()["z"])
    tr = model.data_transform
    direct = model.encode(tr.forward(torch.tensor(x, dtype=torch.float64)).float())
    np.testing.assert_allclose(z, direct.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z, latent.encode(model, x).numpy(), rtol=1e-6, atol=1e-7)


def test_encode_sample_is_seeded(client):
    """"sample": true draws (different from the mean), reproducibly under a seed."""
    x = rows(3)
    a = client.post("/encode", json={"x": x, "sample": True, "seed": 5}).json()["z"]
    b = client.post("/encode", json={"x": x, "sample": True, "seed": 5}).json()["z"]
    mean = client.post("/encode", json={"x": x}).json()["z"]
    assert a == b and a != mean


def test_decode_and_reconstruct(client, model):
    """/decode returns decoder means in raw units (the standardisation undone); /reconstruct is
    decode(encode(x))."""
    z = [[0.1, -0.2], [1.0, 0.5]]
    x = np.array(client.post("/decode", json={"z": z}).json()["x"])
    np.testing.assert_allclose(x, latent.decode(model, z).numpy(), rtol=1e-6, atol=1e-6)
    assert np.abs(x.mean()) > 1.0  # raw units (shift ≈ 3), not the model's standardised ones
    inp = rows(4)
    rec = client.post("/reconstruct", json={"x": inp}).json()
    codes = client.post("/encode", json={"x": inp}).json()["z"]
    np.testing.assert_allclose(rec["z"], codes, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(rec["x"], client.post("/decode", json={"z": codes}).json()["x"],
                               rtol=1e-6, atol=1e-6)


def test_sample(client):
    """/sample: n prior draws and their decoder means; seeded draws repeat."""
    a = client.post("/sample", json={"n": 6, "seed": 3}).json()
    b = client.post("/sample", json={"n": 6, "seed": 3}).json()
    assert a == b and np.array(a["x"]).shape == (6, X_DIM) and np.array(a["z"]).shape == (6, 2)
    np.testing.assert_allclose(a["x"], client.post("/decode", json={"z": a["z"]}).json()["x"],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["linear", "spherical", "quantile"])
def test_interpolate(client, method):
    """/interpolate: paths start and end at the endpoints' codes, every point decoded."""
    start, end = rows(2, seed=1), rows(2, seed=2)
    out = client.post("/interpolate", json={"start": start, "end": end, "steps": 5,
                                            "method": method}).json()
    z, x = np.array(out["z"]), np.array(out["x"])
    assert z.shape == (2, 5, Z_DIM) and x.shape == (2, 5, X_DIM)
    np.testing.assert_allclose(out["t"], np.linspace(0, 1, 5), atol=1e-7)
    np.testing.assert_allclose(z[:, 0], client.post("/encode", json={"x": start}).json()["z"],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(z[:, -1], client.post("/encode", json={"x": end}).json()["z"],
                               rtol=1e-6, atol=1e-7)
    coded = client.post("/interpolate", json={"start": z[:, 0].tolist(), "end": z[:, -1].tolist(),
                                              "steps": 5, "method": method, "codes": True}).json()
    np.testing.assert_allclose(coded["z"], out["z"], rtol=1e-6, atol=1e-6)


GOOD = [1.0, 2.0, 3.0, 4.0]
BAD_INPUTS = [
    ("/encode", {"x": [[1.0, 2.0, 3.0]]}, 422, "rows of 3 values"),
    ("/encode", {"x": [GOOD, [1.0]]}, 422, "same length"),
    ("/encode", '{"x": [[NaN, 1, 2, 3]]}', 422, "finite"),
    ("/encode", '{"x": [[Infinity, 1, 2, 3]]}', 422, "finite"),
    ("/encode", {"x": "abc"}, 422, "x: "),
    ("/encode", {"x": [["1", 2, 3, 4]]}, 422, "valid number"),
    ("/encode", {"x": [[True, 2, 3, 4]]}, 422, "valid number"),
    ("/encode", {"x": [GOOD], "sample": "yes"}, 422, "sample"),
    ("/encode", {"x": [GOOD], "foo": 1}, 422, "foo: Extra inputs are not permitted"),
    ("/encode", {"x": [GOOD] * (MAX_BATCH + 1)}, 413, "limit of 64"),
    ("/encode", {"x": []}, 422, "at least 1"),
    ("/encode", {}, 422, "x: Field required"),
    ("/encode", "{x: [", 422, "JSON"),
    ("/encode", {"x": [GOOD], "seed": -1}, 422, "seed"),
    ("/encode", {"x": [[[1.0, 2.0, 3.0, 4.0]]]}, 422, "valid number"),
    ("/decode", {"z": [[1.0, 2.0, 3.0]]}, 422, "rows of 3 values"),
    ("/decode", {"x": [[1.0, 2.0]]}, 422, "z: Field required"),
    ("/reconstruct", {"x": [[1.0]]}, 422, "rows of 1 values"),
    ("/sample", {"n": 0}, 422, "n: "),
    ("/sample", {"n": MAX_BATCH + 1}, 413, "limit of 64"),
    ("/sample", {"n": "5"}, 422, "n: "),
    ("/sample", {"n": 1.5}, 422, "n: "),
    ("/interpolate", {"start": [GOOD], "end": [GOOD], "steps": 1}, 422, "steps"),
    ("/interpolate", {"start": [GOOD], "end": [GOOD, GOOD]}, 422, "pairs"),
    ("/interpolate", {"start": [GOOD], "end": [GOOD], "method": "cubic"}, 422, "method"),
    ("/interpolate", {"start": [GOOD] * 9, "end": [GOOD] * 9, "steps": 8}, 413, "limit"),
    ("/interpolate", {"start": [[1.0, 2.0]], "end": [[1.0, 2.0]], "codes": True, "x": 1}, 422,
     "Extra inputs"),
]


@pytest.mark.parametrize("path, body, status, detail", BAD_INPUTS,
                         ids=[f"{p}-{i}" for i, (p, *_) in enumerate(BAD_INPUTS)])
def test_bad_input_is_a_4xx_with_one_line(client, path, body, status, detail):
    """Each malformed request gets the expected 4xx and a one-line detail naming the problem
    (catches a check that lets bad input reach the model, where it would be a 500)."""
    if isinstance(body, str):
        resp = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        resp = client.post(path, json=body)
    assert resp.status_code == status, resp.text
    msg = resp.json()["detail"]
    assert isinstance(msg, str) and "\n" not in msg and detail in msg, msg


def test_oversize_body_refused_before_parsing(client):
    """A body over the size limit is a 413 from its Content-Length alone."""
    limit = client.get("/info").json()["service"]["max_body_bytes"]
    resp = client.post("/encode", content=b" " * (limit + 1),
                       headers={"content-type": "application/json"})
    assert resp.status_code == 413 and "limit" in resp.json()["detail"]


def test_extreme_values_never_500(client):
    """Codes far outside the prior may overflow the decoder: the answer is a 200 or a clear 422,
    never a 500 (a non-finite output is refused, not serialised)."""
    for z in ([[1e30, -1e30]], [[3e38, 3e38]]):
        resp = client.post("/decode", json={"z": z})
        assert resp.status_code in (200, 422), resp.text
    resp = client.post("/encode", json={"x": [[1e308] * X_DIM]})
    assert resp.status_code in (200, 422), resp.text


def test_concurrent_requests_are_batched(run_dir):
    """Requests that queue while the model thread is busy go through the model in one pass (8
    requests, 1 pass) and each gets its own rows back, equal to an unbatched call; other work
    keeps its place in the queue."""
    service = ModelService.from_path(run_dir, ServeConfig(max_batch=MAX_BATCH))
    plain = ModelService.from_path(run_dir, ServeConfig(max_batch=MAX_BATCH, batching=False))
    inputs = [rows(i + 1, seed=i) for i in range(8)]
    results: dict[int, np.ndarray] = {}
    gate, busy = threading.Event(), threading.Event()
    try:
        blocker = threading.Thread(target=lambda: service._worker.call(
            lambda: (busy.set(), gate.wait(10))))
        blocker.start()
        assert busy.wait(10)  # the model thread is now held by the blocker
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, service.encode(inputs[i]))) for i in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while service._worker._queue.qsize() < 8 and time.monotonic() < deadline:
            time.sleep(0.001)
        gate.set()
        for t in [blocker, *threads]:
            t.join(10)
        assert service._worker.passes == 1
        for i, x in enumerate(inputs):  # float32 rounding of O(1) sums: a batch of 36 rows and
            # one of 1–8 may take different GEMM kernels (seen with MKL on Intel); a row mix-up
            # is off by O(0.1)
            np.testing.assert_allclose(results[i], plain.encode(x), rtol=1e-6, atol=1e-6)
        plain.encode(inputs[0])
        assert plain._worker.passes == 9  # without batching: one pass per request
    finally:
        service.close()
        plain.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchmim_serve_subprocess(run_dir, model):
    """`torchmim serve RUN --host 127.0.0.1 --port P` really serves: /health answers within the
    time bound, /encode gives the library's codes, and the process ends on SIGTERM."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "torchmim", "serve", str(run_dir / "model.pt"), "--host",
         "127.0.0.1", "--port", str(port), "--log-level", "warning", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service did not answer /health in 60 s"
            time.sleep(0.2)
        x = rows(3)
        resp = httpx.post(f"{base}/encode", json={"x": x}, timeout=10)
        assert resp.status_code == 200
        np.testing.assert_allclose(resp.json()["z"], latent.encode(model, x).numpy(),
                                   rtol=1e-6, atol=1e-7)
        bad = httpx.post(f"{base}/encode", content=json.dumps({"x": [[1.0]]}), timeout=10,
                         headers={"content-type": "application/json"})
        assert bad.status_code == 422
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
            proc.kill()
            proc.wait(timeout=10)
