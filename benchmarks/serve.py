"""`clipvil serve` under load: VQA requests/s and p50/p95 latency at 1, 4 and 16 concurrent clients.

The server is a real `clipvil serve` subprocess on 127.0.0.1 (a free port); the clients are threads of this
process, each with its own keep-alive HTTP connection, posting the synthetic sample images (224x224 JPEG)
with their questions. Every level sends a fixed number of requests (bounded; nothing leaves loopback). A
reply that is not 200 counts as an error (503 = the server's queue was full).

    .venv/bin/python benchmarks/serve.py --vqa-checkpoint runs/demo/run/checkpoints/best.pt \
        --out benchmarks/results/serve.json
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_json
from clipvil.apps.serve_assets import make_samples

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(checkpoint: Path, port: int, workers: int, queue: int) -> subprocess.Popen[bytes]:
    """`clipvil serve` in a subprocess; returns once /healthz answers (or raises with its output)."""
    cmd = [sys.executable, "-m", "clipvil.cli", "serve", "--vqa-checkpoint", str(checkpoint), "--port", str(port),
           "--workers", str(workers), "--queue", str(queue), "--timeout", "120"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"clipvil serve exited: {proc.stdout.read().decode() if proc.stdout else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("clipvil serve did not start within 120 s")


def run_level(url: str, bodies: list[tuple[bytes, str]], clients: int, requests: int) -> dict[str, Any]:
    """`requests` VQA posts spread over `clients` concurrent connections."""
    per_client = [requests // clients + (1 if c < requests % clients else 0) for c in range(clients)]

    def client(c: int) -> list[tuple[float, int, float]]:
        out = []
        with httpx.Client(base_url=url, timeout=300) as http:
            for i in range(per_client[c]):
                jpeg, question = bodies[(c + i) % len(bodies)]
                t0 = time.perf_counter()
                r = http.post("/api/vqa", files={"image": ("s.jpg", jpeg, "image/jpeg")},
                              data={"question": question})
                ms = (time.perf_counter() - t0) * 1000
                out.append((ms, r.status_code, float(r.json()["elapsed_ms"]) if r.status_code == 200 else 0.0))
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        rows = [row for rows in pool.map(client, range(clients)) for row in rows]
    wall = time.perf_counter() - t0
    ok = [r for r in rows if r[1] == 200]
    lat = np.array([r[0] for r in ok]) if ok else np.array([np.nan])
    model = np.array([r[2] for r in ok]) if ok else np.array([np.nan])
    return {"clients": clients, "requests": len(rows), "errors": len(rows) - len(ok),
            "error_statuses": sorted({r[1] for r in rows if r[1] != 200}), "wall_s": round(wall, 3),
            "requests_per_s": round(len(ok) / wall, 2), "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p95_ms": round(float(np.percentile(lat, 95)), 1),
            "model_p50_ms": round(float(np.percentile(model, 50)), 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vqa-checkpoint", default="runs/demo/run/checkpoints/best.pt")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=48, help="requests per level (default 48)")
    parser.add_argument("--workers", type=int, default=1, help="server inference threads (default 1)")
    parser.add_argument("--warmup", type=int, default=4, help="untimed requests first (default 4)")
    parser.add_argument("--out", default="benchmarks/results/serve.json")
    args = parser.parse_args(argv)
    checkpoint = Path(args.vqa_checkpoint)
    if not checkpoint.is_file():
        raise SystemExit(f"{checkpoint}: no such checkpoint (run `clipvil demo` first, or pass --vqa-checkpoint)")
    bodies = [(s.jpeg, s.question) for s in make_samples(4)]
    port = _free_port()
    server = start_server(checkpoint, port, args.workers, queue=max(args.clients))
    url = f"http://127.0.0.1:{port}"
    load_before = os.getloadavg()[0]
    try:
        run_level(url, bodies, 1, args.warmup)
        levels = [run_level(url, bodies, c, args.requests) for c in args.clients]
    finally:
        server.terminate()
        server.wait(30)
    write_json(args.out, {
        "benchmark": "clipvil serve: POST /api/vqa on 127.0.0.1",
        "checkpoint": str(checkpoint),
        "server": {"workers": args.workers, "queue": max(args.clients), "cpus": os.cpu_count()},
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before, after: others' work
        "image": "224x224 synthetic JPEG, ~9 KB", "requests_per_level": args.requests,
        "latency": "client-side round trip (upload, queue, decode, encode, head, JSON)",
        "levels": levels,
    })


if __name__ == "__main__":
    main()
