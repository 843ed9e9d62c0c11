"""API under load: ``perovdb serve`` on the embedded store with the real data enlarged 10x, hit by 20 clients.

One run, numbers and ratios only (no timed assertions). Setup (not measured): the real structures and
calculations (ingested once into memory://, or read from ``--cache``) plus ``enlarge()`` copies from
``benchmarks/builders.py`` go into a fresh monty:// store; materials are built by the materials builder
on the real (1x) data and copied in; predictions are synthetic documents (an imported upstream model,
one prediction per structure, value = the structure's first band gap or 1.0) — the API reads them the
same way whatever their values.

Then ``perovdb serve`` runs in a subprocess (uvicorn, free localhost port) and a second process runs
``--clients`` (20) concurrent keep-alive connections for ``--seconds`` (20 s), each looping over a mix of
/structures, /materials and /predictions queries. Reported: requests/s, p50/p95/p99 latency, errors —
beside the same queries issued directly through ``perovdb.query.find`` (one thread, in this process, same
store), and the CPU time server and load generator each spent per request. Targets: 0 errors,
p95 < 100 ms, HTTP <= 3x direct (direct queries/s over HTTP requests/s).

The load generator shares the two cores with the server, so, as with wrk or ab, it must cost far less
than the server or the run measures the client: the targets are checked on a load of minimal HTTP/1.1
clients on asyncio sockets (one request line, the body read to its Content-Length, the status checked;
~0.25 ms of CPU a request). A second phase runs the same mix through httpx's ``AsyncClient``, what a
Python script would use: reported beside, not checked, since httpx spends ~2.5 ms of CPU a request itself
(``--no-httpx`` skips it).

Run: ``.venv/bin/python benchmarks/api_load.py [--factor 10] [--seconds 20] [--clients 20] [--cache PATH]
[--no-httpx]``
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

PYTHON = sys.executable
#: a request taking longer than this (s) counts as an error (keeps the run bounded when the store is slow)
TIMEOUT = 30.0


def queries(model_id: str, structure_ids: list[str]) -> list[tuple[str, dict[str, str], str, dict[str, Any], list[str] | None]]:
    """(path, HTTP params, collection, equivalent find() criteria, fields)."""
    s_fields = ["structure_id", "reduced_formula", "nsites", "perovskite.mixing_type"]
    m_filter = {"preferred.band_gap.value": {"$gte": 1.0, "$lte": 2.0}}
    m_fields = ["material_id", "reduced_formula", "preferred.band_gap.value"]
    few = structure_ids[:5]
    return [
        ("/structures", {"elements": "Pb,I", "nsites_max": "40", "fields": ",".join(s_fields), "limit": "20"},
         "structures", {"elements": {"$all": ["I", "Pb"]}, "nsites": {"$lte": 40}}, s_fields),
        ("/materials", {"filter": json.dumps(m_filter), "fields": ",".join(m_fields), "limit": "20"},
         "materials", m_filter, m_fields),
        ("/predictions", {"model_id": model_id, "limit": "20"}, "predictions", {"model_id": model_id}, None),
        ("/predictions", {"structure_id": ",".join(few)}, "predictions", {"structure_id": {"$in": few}}, None),
    ]  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- the load generator (second process) ---------------------------------------------------------
def client_main(base: str, seconds: float, clients: int, spec_file: str, raw: bool = False) -> None:
    """``clients`` concurrent keep-alive connections from one asyncio loop, each looping over the mix
    (httpx's ``AsyncClient``, or with ``raw`` a minimal HTTP/1.1 client on asyncio streams)."""
    import asyncio
    from urllib.parse import urlencode, urlsplit

    import httpx

    mix = json.loads(Path(spec_file).read_text())
    latencies: list[float] = []
    errors: list[str] = []

    async def read_response(reader: asyncio.StreamReader) -> int:
        """The status of the next response, its body read to its Content-Length."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:"))
        await reader.readexactly(length)
        return int(lines[0].split(" ", 2)[1])

    async def measure(offset: int, deadline: float, send: Callable[[int], Awaitable[int]],
                      on_error: Callable[[], None] | None = None) -> None:
        """Until ``deadline``, request the mix in turn from ``offset`` (``send(i)`` returns the status of
        ``mix[i]``), recording each latency and each error; ``on_error`` drops a broken connection."""
        k = offset
        while time.perf_counter() < deadline:
            i, k = k % len(mix), k + 1
            start = time.perf_counter()
            try:
                status = await send(i)
                if status != 200:
                    errors.append(f"{mix[i][0]} {status}")
            except Exception as error:  # noqa: BLE001  # a refused, dropped or timed-out connection is an error too
                errors.append(f"{mix[i][0]} {type(error).__name__}")
                if on_error is not None:
                    on_error()
            latencies.append(time.perf_counter() - start)

    async def raw_client(offset: int, deadline: float) -> None:
        """GET over one keep-alive connection; the body is read to its Content-Length."""
        url = urlsplit(base)
        requests = [f"GET {path}?{urlencode(params)} HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode()
                    for path, params in mix]  # fmt: skip
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

        async def send(i: int) -> int:
            nonlocal connection
            if connection is None:
                connection = await asyncio.open_connection(url.hostname, url.port)
            reader, writer = connection
            writer.write(requests[i])
            return await asyncio.wait_for(read_response(reader), TIMEOUT)

        def close() -> None:
            nonlocal connection
            if connection is not None:
                connection[1].close()
            connection = None

        await measure(offset, deadline, send, close)
        close()

    async def client(offset: int, deadline: float) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT, limits=limits) as http:

            async def send(i: int) -> int:
                path, params = mix[i]
                return (await http.get(path, params=params)).status_code

            await measure(offset, deadline, send)

    async def run() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*((raw_client if raw else client)(i, deadline) for i in range(clients)))

    cpu = time.process_time()
    started = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    print(json.dumps({"n": len(latencies), "elapsed": elapsed, "latencies": latencies, "errors": errors[:20],
                      "n_errors": len(errors), "cpu": cpu}))  # fmt: skip


# -- setup and the direct measurement (main process) -----------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a running process has used so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prepare(uri: str, factor: int, cache: Path | None) -> tuple[str, list[str]]:
    from builders import CHECKPOINT, enlarge, insert_new, real_documents

    from perovdb import connect
    from perovdb.builders import run_builders
    from perovdb.builders.predictions import geometry_digest
    from perovdb.config import Settings
    from perovdb.documents import PredictionDoc
    from perovdb.ml.registry import activate, import_upstream

    clock = time.perf_counter()
    real = real_documents(cache)
    memory = connect("memory://", settings=Settings(uri="memory://"))
    insert_new(memory.structures, real["structures"])
    insert_new(memory.calculations, real["calculations"])
    run_builders(memory, ["materials"])
    materials = [{k: v for k, v in d.items() if k != "_id"} for d in memory.materials.query({})]
    structures, calcs, _ = enlarge(real["structures"], real["calculations"], factor)
    structures = real["structures"] + structures
    calcs = real["calculations"] + calcs

    db = connect(uri, settings=Settings(uri=uri))
    insert_new(db.structures, structures)
    insert_new(db.calculations, calcs)
    insert_new(db.materials, materials)
    model = import_upstream(db, CHECKPOINT, "bench", "band_gap", "OptB88vdW")
    activate(db, model.model_id)
    gap: dict[str, float] = {}
    for c in calcs:
        if c["properties"].get("band_gap") is not None:
            gap.setdefault(c["structure_id"], c["properties"]["band_gap"])
    predictions = []
    for s in structures:
        digest = geometry_digest(s)
        predictions.append(PredictionDoc(
            prediction_id=PredictionDoc.make_id(model.model_id, s["structure_id"], digest), model_id=model.model_id,
            structure_id=s["structure_id"], structure_digest=digest, property="band_gap", unit="eV",
            value=gap.get(s["structure_id"], 1.0)).to_store())  # fmt: skip
    insert_new(db.predictions, predictions)
    print(f"store: {len(structures)} structures, {len(calcs)} calculations, {len(materials)} materials (1x), "
          f"{len(predictions)} predictions; prepared in {time.perf_counter() - clock:.0f} s (not measured)")  # fmt: skip
    ids = sorted(s["structure_id"] for s in structures)
    db.close()
    return model.model_id, ids[:: max(1, len(ids) // 50)]


def direct(uri: str, mix: list[tuple], seconds: float) -> dict[str, list[float]]:
    """Latency of each query through ``find()`` (sequential, one thread), cycling the mix for ``seconds``
    after one untimed pass (the server is warmed up the same way)."""
    from perovdb import connect
    from perovdb.config import Settings
    from perovdb.query import find

    db = connect(uri, settings=Settings(uri=uri))
    for _, _, collection, criteria, fields in mix:  # warm-up, as the server had: the first read of each
        find(db, collection, criteria, fields=fields, limit=20)  # collection loads it (~0.9 s in all)
    per_path: dict[str, list[float]] = {}  # the two /predictions queries share a line
    deadline = time.perf_counter() + seconds
    k = 0
    while time.perf_counter() < deadline or k < len(mix):  # every query at least once
        path, params, collection, criteria, fields = mix[k % len(mix)]
        label = f"{path}?{'&'.join(k for k in params if k not in ('fields', 'limit'))}"
        k += 1
        start = time.perf_counter()
        find(db, collection, criteria, fields=fields, limit=20)
        per_path.setdefault(label, []).append(time.perf_counter() - start)
    db.close()
    return per_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, default=10, help="Enlargement of the real data.")
    parser.add_argument("--seconds", type=float, default=20.0, help="Duration of the load.")
    parser.add_argument("--clients", type=int, default=20, help="Concurrent clients (threads).")
    parser.add_argument("--cache", type=Path, default=None, help="Pickle of the ingested documents (see builders.py).")
    parser.add_argument("--no-httpx", action="store_true", help="Skip the second load phase, with httpx clients.")
    parser.add_argument("--client", default=None, help=argparse.SUPPRESS)  # internal: run as the load generator
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)  # internal: the raw load generator
    parser.add_argument("--mix", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.client, args.seconds, args.clients, args.mix, raw=args.raw)
        return

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"monty://{tmp}/store"
        model_id, sample_ids = prepare(uri, args.factor, args.cache)
        mix = queries(model_id, sample_ids)
        mix_file = Path(tmp) / "mix.json"
        mix_file.write_text(json.dumps([[path, params] for path, params, *_ in mix]))

        port = free_port()
        env = {**os.environ, "PEROVDB_URI": uri}
        server_log = open(Path(tmp) / "server.log", "w")  # noqa: SIM115
        server = subprocess.Popen([str(Path(PYTHON).parent / "perovdb"), "serve", "--uri", uri, "--port", str(port)],
                                  cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=server_log)  # fmt: skip
        try:
            import httpx

            base = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    if httpx.get(base + "/stats", timeout=60).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            else:
                raise RuntimeError("the server did not start")
            for path, params, *_ in mix:  # warm-up: each query once
                httpx.get(base + path, params=params, timeout=60)
            results = {}
            for phase in ["raw"] if args.no_httpx else ["raw", "httpx"]:
                before = process_cpu(server.pid)
                load = subprocess.run(
                    [PYTHON, __file__, "--client", base, "--seconds", str(args.seconds), "--clients", str(args.clients),
                     "--mix", str(mix_file), *(["--raw"] if phase == "raw" else [])],
                    capture_output=True, text=True, cwd=REPO, check=True,
                )  # fmt: skip
                after = process_cpu(server.pid)
                results[phase] = json.loads(load.stdout.strip().splitlines()[-1])
                results[phase]["server_cpu"] = None if before is None or after is None else after - before
            result = results["raw"]
        finally:
            server.terminate()  # uvicorn waits for in-flight requests the clients gave up on: then kill it
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            server_log.close()
        server_errors = [line.rstrip() for line in open(Path(tmp) / "server.log")
                         if "Error" in line or "Exception" in line][-5:]  # fmt: skip
        per_path = direct(uri, mix, min(args.seconds, 10.0))

    if server_errors:
        print("server log (last error lines):\n  " + "\n  ".join(server_errors))
    all_direct = [x for v in per_path.values() for x in v]
    direct_mean = statistics.mean(all_direct)
    print(f"\ndirect find() (1 thread): {len(all_direct) / sum(all_direct):.1f} queries/s; per query median ms:")
    for path, values in per_path.items():
        print(f"  {path:36} {statistics.median(values) * 1000:8.1f}  (n={len(values)})")
    labels = {"raw": "minimal HTTP/1.1 clients (the measure the targets are checked on)",
              "httpx": "httpx clients (beside: what a Python script sees; httpx's own CPU bounds it)"}
    for phase, res in results.items():
        lat, rate = res["latencies"], res["n"] / res["elapsed"]
        print(f"\nHTTP load, {labels[phase]}: {args.clients} keep-alive connections x {args.seconds:.0f} s, "
              f"mix of {len(mix)} queries")
        print(f"  requests {res['n']}, {rate:.1f} requests/s, errors {res['n_errors']}"
              + (f" e.g. {res['errors'][:3]}" if res["n_errors"] else ""))  # fmt: skip
        print(f"  latency p50 {percentile(lat, 0.5) * 1000:.0f} ms, p95 {percentile(lat, 0.95) * 1000:.0f} ms, "
              f"p99 {percentile(lat, 0.99) * 1000:.0f} ms")  # fmt: skip
        print(f"  direct queries/s / HTTP requests/s = {(1 / direct_mean) / rate:.2f}x")
        line = f"  CPU per request: load generator {res['cpu'] / res['n'] * 1000:.2f} ms"
        if res["server_cpu"] is not None:
            server_ms = res["server_cpu"] / res["n"] * 1000
            line += (f", server {server_ms:.2f} ms = {server_ms / (direct_mean * 1000):.2f}x the direct query's "
                     f"{direct_mean * 1000:.2f} ms")
        print(line)
    lat, rate = result["latencies"], result["n"] / result["elapsed"]
    p95, ratio = percentile(lat, 0.95) * 1000, (1 / direct_mean) / rate
    print(f"\ntargets (minimal clients): errors {result['n_errors']} (target 0), p95 {p95:.0f} ms (target < 100), "
          f"HTTP {ratio:.2f}x direct (target <= 3x): "
          + ("met" if result["n_errors"] == 0 and p95 < 100 and ratio <= 3 else "MISSED"))  # fmt: skip


if __name__ == "__main__":
    main()
