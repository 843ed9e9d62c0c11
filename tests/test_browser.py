"""The web page in headless Debian Chromium (Playwright driving /usr/bin/chromium) against uvicorn on localhost."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import HSE_TABLE, PBE_TABLE, make_database
from perovdb.config import Settings
from perovdb.documents import EvaluationDoc
from perovdb.ingest import ingest
from perovdb.query import find

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: as the machine notes require: no sandbox as root, and no background networking (the network is closed)
CHROMIUM_FLAGS = [  # Playwright adds --headless itself
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the browser is Debian's)")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """uvicorn serving the app on a free localhost port, over real rows with two models' predictions."""
    import uvicorn

    from perovdb.api import create_app
    from test_api import _build_materials, _ml_documents

    db = make_database("memory", tmp_path_factory.mktemp("browser"))
    tables = tmp_path_factory.mktemp("tables")
    for source, name in ((HSE_TABLE, "HSE_data.csv"), (PBE_TABLE, "PBE_data.csv")):
        rows = source.read_text().splitlines(keepends=True)
        (tables / name).write_text("".join(r for i, r in enumerate(rows) if i % 8 == 0 or r.startswith("CsPb")))
        assert ingest(db, tables / name, dataset=f"mannodi_halide_perovskites/{name}").ok
    _build_materials(db)
    documents = _ml_documents(db)
    documents["models"][1]["active"] = True  # the page opens on the active model
    # a PBE evaluation of the HSE06 model, stored first: the page must still draw the HSE06 one
    pbe = [c for c in find(db, "calculations", {"level_of_theory": "PBE"}) if c["properties"].get("band_gap")][:12]
    pairs = [{"structure_id": c["structure_id"], "predicted": round(0.9 * c["properties"]["band_gap"] + 0.2, 4),
              "reference": c["properties"]["band_gap"]} for c in pbe]
    documents["evaluations"].insert(0, EvaluationDoc(
        evaluation_id=EvaluationDoc.make_id("model-0002", "band_gap", "PBE", "all"), model_id="model-0002",
        property="band_gap", reference_level_of_theory="PBE", unit="eV", n=len(pairs), pairs=pairs,
        mae=sum(abs(p["predicted"] - p["reference"]) for p in pairs) / len(pairs),
    ).model_dump(mode="json"))
    for collection, docs in documents.items():
        db.store(collection).update(docs, key=db.store(collection).key)
    port = _free_port()
    config = uvicorn.Config(create_app(db, Settings(uri="memory://")), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not uv.started and time.time() < deadline:
        time.sleep(0.05)
    assert uv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)
    db.close()


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[object]:
    with playwright.sync_playwright() as p:  # launch() gives a new empty profile (--user-data-dir) itself
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        outside: list[str] = []
        context = browser.new_context()
        context.route("**/*", lambda route: (route.continue_() if route.request.url.startswith(server)
                                             else (outside.append(route.request.url), route.abort())))
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(server + "/")
        tab.wait_for_selector("body[data-ready=true]", timeout=15000)
        tab.outside_requests = outside  # type: ignore[attr-defined]
        tab.js_errors = errors  # type: ignore[attr-defined]
        yield tab
        browser.close()


def test_page_loads_without_outside_requests(page):
    assert page.title() == "perovdb"
    assert "structures" in page.inner_text("#stats")
    assert page.outside_requests == [] and page.js_errors == []


def test_search_returns_expected_rows(page):
    page.fill("#formula", "CsPbI3")
    page.click("#search-button")
    page.wait_for_selector("#search-status >> text=shown")
    rows = page.query_selector_all("#results tbody tr")
    formulas = {row.query_selector("td").inner_text() for row in rows}
    assert formulas == {"CsPbI3"}
    assert any(row.query_selector("td.hse").inner_text() for row in rows)  # DFT values beside predictions
    page.fill("#formula", "")
    page.fill("#elements", "Pb,I")
    page.click("#search-button")
    page.wait_for_selector("#search-status >> text=shown")  # (the page's CSP forbids eval: no wait_for_function)
    formulas = [row.query_selector("td").inner_text() for row in page.query_selector_all("#results tbody tr")]
    assert formulas and all("Pb" in f and "I" in f for f in formulas)


def test_parity_plot_renders_points(page):
    page.wait_for_selector("#parity-svg[data-model=model-0002] circle.point")  # the active model first
    assert page.input_value("#model-select") == "model-0002"
    assert len(page.query_selector_all("#parity-svg circle.point")) == 30
    assert "vs HSE06: n=30" in page.inner_text("#parity-metrics")  # its training level, not the PBE evaluation
    page.select_option("#model-select", "model-0001")
    page.wait_for_selector("#parity-svg[data-model=model-0001] circle.point")
    assert len(page.query_selector_all("#parity-svg circle.point")) == 30
    assert "n=30" in page.inner_text("#parity-metrics")


def test_provenance_view_shows_model_and_job(page):
    formula = page.evaluate("""async () => {
        const p = (await (await fetch('/predictions?limit=1&fields=structure_id')).json()).data[0];
        return (await (await fetch('/structures/' + p.structure_id + '?fields=reduced_formula')).json()).reduced_formula;
    }""")
    page.fill("#formula", formula)
    page.fill("#elements", "")
    page.click("#search-button")
    page.wait_for_selector("a.pred")
    page.click("a.pred >> nth=0")
    page.wait_for_selector("#provenance-svg g.node.model")
    assert "alignn-bandgap" in page.inner_text("#prov-model")
    assert "-aaaa-bbbb-cccc-dddddddddddd" in page.inner_text("#prov-job")
    kinds = {g.get_attribute("data-kind") for g in page.query_selector_all("#provenance-svg g.node")}
    assert {"structure", "model", "prediction", "job"} <= kinds
    assert len(page.query_selector_all("#provenance-svg path.edge")) >= 3
