"""Load test of `posekit serve` on loopback: N concurrent clients for a bounded time.

    python benchmarks/serve_load.py --clients 16 --seconds 60 --json reports/serve_load_cpu.json

Starts `posekit serve` on a free port (or uses --url), sends the example images round-robin from
every client (one keep-alive connection each), and checks every 200 answer against the answer
the server gave for the same image when idle: a response with another image's joints (lost or
mixed-up responses) is counted as an error. Prints requests/s, p50/p90/p99 latency and the status
counts; 503 (queue full, with Retry-After) is the only deliberate refusal."""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

EXAMPLES = sorted(Path("examples").glob("*.jpg"))


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _post(conn: http.client.HTTPConnection, body: bytes, ctype: str) -> tuple[int, dict | None, dict]:
    conn.request("POST", "/v1/pose", body=body, headers={"Content-Type": ctype})
    r = conn.getresponse()
    raw = r.read()
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    return r.status, payload, {k.lower(): v for k, v in r.getheaders()}


def _joints(payload: dict) -> np.ndarray:
    """The answer's first person's joints (x, y); (0, 2) when it found no person."""
    people = payload.get("people") or []
    return np.array([[j["x"], j["y"]] for j in people[0]["joints"]]) if people else np.zeros((0, 2))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.allclose(a, b, atol=0.01)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--url", help="a running server (default: start `posekit serve` here)")
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()

    proc = None
    url = a.url
    if url is None:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([sys.executable, "-m", "posekit", "serve", "--port", str(port), "--model", a.model,
                                 "--backend", a.backend, "--workers", str(a.workers), "--queue", str(a.queue)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host, port = urlparse(url).hostname, urlparse(url).port
    try:
        for _ in range(600):  # wait for the server (model load) up to 60 s
            try:
                c = http.client.HTTPConnection(host, port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"{url}: the server did not come up")
        bodies = [_multipart(p.name, p.read_bytes()) for p in EXAMPLES]
        conn = http.client.HTTPConnection(host, port, timeout=30)
        expected = []
        for body, ctype in bodies:
            status, payload, _ = _post(conn, body, ctype)
            if status != 200:
                raise SystemExit(f"reference request failed: {status} {payload}")
            expected.append(_joints(payload))

        lock = threading.Lock()
        statuses: Counter = Counter()
        latencies: list[float] = []
        problems: Counter = Counter()
        stop = time.monotonic() + a.seconds

        def client(k: int) -> None:
            c = http.client.HTTPConnection(host, port, timeout=60)
            i = k
            while time.monotonic() < stop:
                body, ctype = bodies[i % len(bodies)]
                t0 = time.perf_counter()
                try:
                    status, payload, headers = _post(c, body, ctype)
                except (OSError, http.client.HTTPException) as e:
                    with lock:
                        problems[f"connection: {type(e).__name__}"] += 1
                    c = http.client.HTTPConnection(host, port, timeout=60)
                    continue
                dt = time.perf_counter() - t0
                bad = None
                if status == 200:
                    if payload is None or not _same(_joints(payload), expected[i % len(bodies)]):
                        bad = "wrong joints for the image sent"
                elif status == 503:
                    if headers.get("retry-after") is None:
                        bad = "503 without Retry-After"
                    else:
                        time.sleep(float(headers["retry-after"]) * 0.05)  # a polite, short back-off
                else:
                    bad = f"status {status}"
                with lock:
                    statuses[status] += 1
                    if status == 200:
                        latencies.append(dt)
                    if bad:
                        problems[bad] += 1
                i += 1

        t_start = time.monotonic()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t_start
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    ms = np.array(latencies) * 1e3
    res = {"url": url, "clients": a.clients, "seconds": round(wall, 1), "model": a.model, "backend": a.backend,
           "workers": a.workers, "queue": a.queue, "cpu_count": os.cpu_count(),
           "requests": int(sum(statuses.values())), "ok": int(statuses.get(200, 0)),
           "ok_per_s": round(statuses.get(200, 0) / wall, 1),
           "status_counts": {str(k): int(v) for k, v in sorted(statuses.items())},
           "errors": dict(problems), "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
           "p90_ms": round(float(np.percentile(ms, 90)), 1) if len(ms) else None,
           "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None}
    print(f"{a.clients} clients, {wall:.0f} s: {res['ok_per_s']} ok requests/s; latency of 200s p50 {res['p50_ms']} ms, "
          f"p90 {res['p90_ms']} ms, p99 {res['p99_ms']} ms")
    print(f"status counts {res['status_counts']}; errors (anything but deliberate 503s): {sum(problems.values())} "
          f"{dict(problems) if problems else ''}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
