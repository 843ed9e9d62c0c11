"""API benchmark: requests/s of a typical query through the HTTP API vs the same ``find()`` called directly.

One run, ratios only (no timed assertions). Data: the real HSE06 table and the JARVIS sample, ingested
into memory:// and copied into a fresh monty:// store. The query: structures with Pb and I and at most
40 sites, four fields, 100 per page, one request at a time — through ``find()``, through the app
in-process (one ASGI call per request, no client library, no sockets), and through uvicorn (in a thread)
over loopback HTTP from one keep-alive connection that writes the request line and reads the body to its
Content-Length. The load of many concurrent clients from another process is ``api_load.py``.

Run: ``.venv/bin/python benchmarks/api.py [--seconds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import uvicorn

from perovdb import connect
from perovdb.api import create_app
from perovdb.config import Settings
from perovdb.ingest import ingest
from perovdb.query import find, structure_criteria

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


def asgi_get(app: object, loop: asyncio.AbstractEventLoop, path: str, query: str) -> tuple[int, bytes]:
    """One GET through the ASGI app itself: (status, body)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}  # fmt: skip
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    loop.run_until_complete(app(scope, receive, send))  # type: ignore[operator]
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


class HttpConnection:
    """A keep-alive HTTP/1.1 connection: GET, read the head, read the body to its Content-Length."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")

    def get(self, target: str) -> tuple[int, bytes]:
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        status = int(self.file.readline().split()[1])
        length = 0
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, self.file.read(length)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


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
            loop = asyncio.new_event_loop()
            query = urlencode(PARAMS)
            status, body = asgi_get(app, loop, "/structures", query)
            assert status == 200 and body.count(b'"structure_id"') == expected

            port = free_port()
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.05)

            direct = rate(lambda db=db, c=criteria: find(db, "structures", c, fields=FIELDS, limit=100), args.seconds)
            asgi = rate(lambda a=app, l=loop, q=query: asgi_get(a, l, "/structures", q), args.seconds)
            http = HttpConnection(port)  # opened now: uvicorn closes a keep-alive connection idle for 5 s
            status, body = http.get(f"/structures?{query}")
            assert status == 200 and body.count(b'"structure_id"') == expected
            over_http = rate(lambda h=http, q=query: h.get(f"/structures?{q}"), args.seconds)
            http.close()
            loop.close()
            server.should_exit = True
            thread.join(timeout=10)
            print(f"{db.backend:8} {direct:10.1f} {asgi:10.1f} {over_http:10.1f} {asgi / direct:10.2f} "
                  f"{over_http / direct:10.2f}   ({expected} documents per page)")
        monty.close()
    source.close()
    print("\nratio = API requests/s ÷ direct find() calls/s, one request at a time (1.0 would be free; the API "
          "also counts matches for meta.total, checks parameters and serialises JSON; over HTTP, server and client "
          "share this process)")


if __name__ == "__main__":
    main()
