"""API benchmark: requests/s of a typical query through the HTTP API vs the same ``find()`` called directly.

One run, ratios only (no timed assertions). Data: the real HSE06 table and the JARVIS sample, ingested
into memory:// and copied into a fresh monty:// store. The query: structures with Pb and I and at most
40 sites, four fields, 100 per page — through ``find()``, through the app in-process (ASGI, no
sockets), and through uvicorn over loopback HTTP with a keep-alive client.

Run: ``.venv/bin/python benchmarks/api.py [--seconds 3]``
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from perovdb import connect  # noqa: E402
from perovdb.api import create_app  # noqa: E402
from perovdb.config import Settings  # noqa: E402
from perovdb.ingest import ingest  # noqa: E402
from perovdb.query import find, structure_criteria  # noqa: E402

DATA = REPO / "data"
FIELDS = ["structure_id", "reduced_formula", "nsites", "perovskite.mixing_type"]
PARAMS = {"elements": "Pb,I", "nsites_max": "40", "fields": ",".join(FIELDS), "limit": "100"}


def rate(call: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``call`` over about ``seconds`` (after one warm-up call)."""
    call()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        n += 1
    return n / (time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="Time per measurement.")
    args = parser.parse_args()

    source = connect("memory://", settings=Settings(uri="memory://"))
    started = time.perf_counter()
    ingest(source, DATA / "mannodi_halide_perovskites" / "HSE_data.csv")
    ingest(source, DATA / "jarvis_alignn_sample", property_name="band_gap", level="OptB88vdW")
    print(f"ingested {source.structures.count()} structures in {time.perf_counter() - started:.1f} s")

    with tempfile.TemporaryDirectory() as folder:
        uri = f"monty://{folder}/store"
        monty = connect(uri, settings=Settings(uri=uri))
        for name in ("structures", "calculations"):
            docs = [{k: v for k, v in d.items() if k != "_id"} for d in source.store(name).query({})]
            monty.store(name).update(docs, key=monty.store(name).key)

        print(f"\nquery: GET /structures?{'&'.join(f'{k}={v}' for k, v in PARAMS.items())}")
        print(f"{'backend':8} {'find() /s':>10} {'ASGI /s':>10} {'HTTP /s':>10} {'ASGI/find':>10} {'HTTP/find':>10}")
        for db in (source, monty):
            criteria = structure_criteria(elements=["Pb", "I"], extra={"nsites": {"$lte": 40}})
            expected = len(find(db, "structures", criteria, fields=FIELDS, limit=100))
            app = create_app(db, Settings(uri=db.uri))
            client = TestClient(app)
            assert len(client.get("/structures", params=PARAMS).json()["data"]) == expected

            port = free_port()
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.05)
            http = httpx.Client(base_url=f"http://127.0.0.1:{port}")

            direct = rate(lambda db=db, c=criteria: find(db, "structures", c, fields=FIELDS, limit=100), args.seconds)
            asgi = rate(lambda: client.get("/structures", params=PARAMS), args.seconds)
            over_http = rate(lambda: http.get("/structures", params=PARAMS), args.seconds)
            http.close()
            server.should_exit = True
            thread.join(timeout=10)
            print(f"{db.backend:8} {direct:10.1f} {asgi:10.1f} {over_http:10.1f} {asgi / direct:10.2f} "
                  f"{over_http / direct:10.2f}   ({expected} documents per page)")
        monty.close()
    source.close()
    print("\nratio = API requests/s ÷ direct find() calls/s (1.0 would be free; the API also counts matches "
          "for meta.total, checks parameters and serialises JSON)")


if __name__ == "__main__":
    main()
