"""Load test of `torchmim serve`: requests/s and p50/p99 latency of POST /encode at a few
concurrency levels, with and without batching of concurrent requests; bounded in time.

    python bench/serve.py                          # a digits-sized MLP model, about 45 s
    python bench/serve.py --checkpoint runs/x      # your own run folder or model.pt
    python bench/serve.py --levels 1 4 16 --seconds 4 --rows 32 --out bench/serve.json
    python bench/serve.py --in-process     # no HTTP: ms per encode call, where torch runs

The service runs as a subprocess on 127.0.0.1 (a free port); the client is one asyncio loop with
httpx, each of the C concurrent workers sending its next request as soon as the last one answers
(a closed loop). Each request encodes ``--rows`` random rows of the model's width (a realistic
batch). Prints a Markdown table and writes the JSON results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _default_model(folder: Path) -> Path:
    """A digits-sized model: 64 features (8×8 images), 8 latents, hidden 128, standardised."""
    import torch

    from torchmim.data.transform import DataTransform
    from torchmim.io import save_model
    from torchmim.models import MLPModelConfig

    torch.manual_seed(0)
    model = MLPModelConfig(x_dim=64, z_dim=8, hidden=128).build()
    model.data_transform = DataTransform.standardize(np.random.default_rng(0).random((100, 64)))
    save_model(model, folder / "model.pt")
    return folder / "model.pt"


def _start(checkpoint: Path, port: int, batching: bool, threads: int | None,
           timeout: float = 60.0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torchmim", "serve", str(checkpoint), "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning",
           "--batching" if batching else "--no-batching"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited: {proc.stderr.read().decode()[-1000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the service did not answer /health within {timeout} s")


async def _level(url: str, body: bytes, concurrency: int, seconds: float, warmup: float
                 ) -> dict[str, float]:
    """C closed-loop workers for ``warmup`` + ``seconds``; latencies of the timed part only."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    t0, t1 = start + warmup, start + warmup + seconds
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def worker() -> None:
            nonlocal errors
            while (now := time.perf_counter()) < t1:
                resp = await client.post(url, content=body, headers=headers)
                done = time.perf_counter()
                if resp.status_code != 200:
                    errors += 1
                elif now >= t0:
                    latencies.append(done - now)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = max(time.perf_counter(), t1) - t0
    lat = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": len(lat), "errors": errors,
            "seconds": elapsed, "requests_per_s": len(lat) / elapsed,
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan")}


def in_process(checkpoint: Path, rows: int, calls: int = 200) -> None:
    """Milliseconds per 32-row encode without HTTP, from a request-like thread: through the
    service's model thread (which set its torch threads), and calling the model directly in
    that thread, as the service did before it had a model thread."""
    import threading

    from torchmim import latent
    from torchmim.serving import ModelService

    service = ModelService.from_path(checkpoint)
    x = np.random.default_rng(0).random((rows, service.x_size))
    ways = {"through the model thread (service.encode)": lambda: service.encode(x),
            "torch called in the request thread (latent.encode)":
                lambda: latent.encode(service.model, x)}
    for name, fn in ways.items():
        out: list[float] = []

        def run(fn=fn, out=out) -> None:
            for _ in range(10):
                fn()
            t = time.perf_counter()
            for _ in range(calls):
                fn()
            out.append((time.perf_counter() - t) / calls * 1000)

        th = threading.Thread(target=run)
        th.start()
        th.join()
        print(f"{name}: {out[0]:.2f} ms per call ({calls} calls)")
    service.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="Run folder or model file (default: a digits-sized MLP model).")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--seconds", type=float, default=4.0, help="Timed seconds per level.")
    ap.add_argument("--warmup", type=float, default=0.5, help="Untimed seconds per level.")
    ap.add_argument("--rows", type=int, default=32, help="Rows per /encode request.")
    ap.add_argument("--threads", type=int, default=None, help="The service's torch threads.")
    ap.add_argument("--modes", nargs="+", default=["batching", "no-batching"],
                    choices=["batching", "no-batching"])
    ap.add_argument("--out", type=Path, default=HERE / "serve.json")
    ap.add_argument("--in-process", action="store_true",
                    help="Only time encode calls without HTTP (see in_process).")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or _default_model(Path(tmp))
        if args.in_process:
            in_process(checkpoint, args.rows)
            return
        results = []
        for mode in args.modes:
            port = _free_port()
            proc = _start(checkpoint, port, mode == "batching", args.threads)
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/info", timeout=5).json()
                width = info["x_size"]
                x = np.random.default_rng(0).random((args.rows, width)).round(4).tolist()
                body = json.dumps({"x": x}).encode()
                for c in args.levels:
                    row = asyncio.run(_level(f"http://127.0.0.1:{port}/encode", body, c,
                                             args.seconds, args.warmup))
                    row.update(mode=mode, rows_per_request=args.rows,
                               rows_per_s=row["requests_per_s"] * args.rows)
                    results.append(row)
                    print(f"{mode:12s} C={c:3d}: {row['requests_per_s']:8.1f} req/s, "
                          f"p50 {row['p50_ms']:7.2f} ms, p99 {row['p99_ms']:7.2f} ms"
                          + (f", {row['errors']} errors" if row["errors"] else ""), flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
    meta = {"command": "python " + " ".join(sys.argv), "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "model": {k: info.get(k) for k in ("x_shape", "z_shape", "num_parameters")},
            "median_p50_ms": statistics.median(r["p50_ms"] for r in results)}
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print("\n| mode | concurrency | requests/s | rows/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['mode']} | {r['concurrency']} | {r['requests_per_s']:.0f} | "
              f"{r['rows_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
