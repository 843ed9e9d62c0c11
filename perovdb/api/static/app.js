// perovdb web page: plain JS, same-origin API calls only, SVG drawn here (no libraries, no CDN).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
let MODELS = [];

function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

async function api(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") query.set(k, v);
  const url = query.toString() ? `${path}?${query}` : path;
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.detail : response.statusText);
  return body;
}

function fmt(value) {
  return typeof value === "number" ? value.toFixed(3) : "";
}

async function loadStats() {
  try {
    const stats = await api("/stats");
    const c = stats.collections;
    document.getElementById("stats").textContent =
      `${c.structures} structures · ${c.calculations} calculations · ${c.materials} materials · ` +
      `${c.models} models · ${c.predictions} predictions`;
  } catch (error) {
    document.getElementById("stats").textContent = "";
  }
}

async function loadModels() {
  MODELS = (await api("/models", {
    fields: "model_id,name,version,target_property,target_level_of_theory,active,job_uuid", limit: 100,
  })).data;
  const select = document.getElementById("model-select");
  select.replaceChildren();
  for (const model of MODELS) select.appendChild(el("option", { value: model.model_id }, `${model.name} v${model.version}`));
  const shown = MODELS.find((m) => m.active) || MODELS[0];  // an active model (the one builders predict with) first
  if (shown) {
    select.value = shown.model_id;
    drawParity(shown.model_id);
  }
}

// The evaluation a model's parity plot shows: against the level of theory it was trained on, on its held-out
// test structures, else on all structures; another level only when the model has none at its own.
function parityEvaluation(evaluations, model) {
  const level = model && model.target_level_of_theory;
  const subsetRank = { "split=test": 0, all: 1 };
  const rank = (e) => (e.reference_level_of_theory === level ? 0 : 10) + (subsetRank[e.subset] ?? 2);
  return evaluations.filter((e) => e.n > 0).sort((a, b) => rank(a) - rank(b))[0];
}

// -- search --------------------------------------------------------------------------------
async function search(event) {
  if (event) event.preventDefault();
  const collection = document.getElementById("collection").value;
  const formula = document.getElementById("formula").value.trim();
  const elements = document.getElementById("elements").value.replace(/\s+/g, "");
  const status = document.getElementById("search-status");
  status.textContent = "searching…";
  status.className = "muted";
  try {
    const rows = collection === "materials" ? await searchMaterials(formula, elements) : await searchStructures(formula, elements);
    await addPredictions(rows);
    renderTable(rows);
    status.textContent = `${rows.length} shown of ${rows.total}`;
  } catch (error) {
    status.textContent = error.message;
    status.className = "error";
  }
}

async function searchMaterials(formula, elements) {
  const fields = "material_id,reduced_formula,perovskite.formula,perovskite.mixing_type,properties.band_gap,structure_ids";
  const body = await api("/materials", { formula, elements, fields, limit: 50, sort: "reduced_formula" });
  const rows = body.data.map((m) => {
    const gaps = (m.properties && m.properties.band_gap) || {};
    return {
      id: m.material_id,
      formula: m.reduced_formula,
      perovskite: m.perovskite ? m.perovskite.formula : "",
      mixing: m.perovskite ? m.perovskite.mixing_type : "",
      pbe: gaps.PBE ? gaps.PBE.value : null,
      hse: gaps.HSE06 ? gaps.HSE06.value : null,
      structure_ids: m.structure_ids || [],
    };
  });
  rows.total = body.meta.total;
  return rows;
}

async function searchStructures(formula, elements) {
  const fields = "structure_id,reduced_formula,perovskite.formula,perovskite.mixing_type";
  const body = await api("/structures", { formula, elements, fields, limit: 50, sort: "reduced_formula" });
  const rows = body.data.map((s) => ({
    id: s.structure_id,
    formula: s.reduced_formula,
    perovskite: s.perovskite ? s.perovskite.formula : "",
    mixing: s.perovskite ? s.perovskite.mixing_type : "",
    pbe: null,
    hse: null,
    structure_ids: [s.structure_id],
  }));
  rows.total = body.meta.total;
  if (rows.length) {
    const calcs = await api("/calculations", {
      structure_id: rows.map((r) => r.id).join(","), fields: "structure_id,level_of_theory,properties.band_gap", limit: 1000,
    });
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const calc of calcs.data) {
      const row = byId.get(calc.structure_id);
      const gap = calc.properties ? calc.properties.band_gap : null;
      if (row && typeof gap === "number") {
        if (calc.level_of_theory === "PBE") row.pbe = gap;
        if (calc.level_of_theory === "HSE06") row.hse = gap;
      }
    }
  }
  return rows;
}

async function addPredictions(rows) {
  const ids = [...new Set(rows.flatMap((r) => r.structure_ids))];
  for (const row of rows) row.predictions = {};
  if (!ids.length || !MODELS.length) return;
  const body = await api("/predictions", {
    structure_id: ids.join(","), property: "band_gap", stale: "false",
    fields: "prediction_id,model_id,structure_id,value", limit: 1000,
  });
  const rowOf = new Map();
  for (const row of rows) for (const sid of row.structure_ids) rowOf.set(sid, row);
  for (const p of body.data) {
    const row = rowOf.get(p.structure_id);
    if (row) row.predictions[p.model_id] = p;
  }
}

function renderTable(rows) {
  const table = document.getElementById("results");
  const head = el("tr");
  for (const title of ["formula", "perovskite", "mixing", "PBE gap (eV)", "HSE06 gap (eV)"]) head.appendChild(el("th", {}, title));
  for (const model of MODELS) head.appendChild(el("th", {}, `${model.name} (eV)`));
  table.tHead.replaceChildren(head);
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const row of rows) {
    const tr = el("tr", { "data-id": row.id });
    tr.appendChild(el("td", {}, row.formula));
    tr.appendChild(el("td", {}, row.perovskite || ""));
    tr.appendChild(el("td", {}, row.mixing || ""));
    tr.appendChild(el("td", { class: "num pbe" }, fmt(row.pbe)));
    tr.appendChild(el("td", { class: "num hse" }, fmt(row.hse)));
    for (const model of MODELS) {
      const td = el("td", { class: "num prediction" });
      const p = row.predictions[model.model_id];
      if (p) {
        const link = el("a", { class: "pred", "data-prediction": p.prediction_id, tabindex: "0" }, fmt(p.value));
        link.addEventListener("click", () => showProvenance(p.prediction_id));
        td.appendChild(link);
      }
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

// -- parity plot ---------------------------------------------------------------------------
let parityShown = 0;  // the latest drawParity call: an earlier one still waiting for the API draws nothing

async function drawParity(modelId) {
  const call = ++parityShown;
  const box = document.getElementById("parity");
  const metrics = document.getElementById("parity-metrics");
  box.replaceChildren();
  const listed = await api("/evaluations", {
    model_id: modelId, fields: "evaluation_id,reference_level_of_theory,subset,n", limit: 1000,
  });  // without their pairs: only the one drawn is fetched whole
  const chosen = parityEvaluation(listed.data, MODELS.find((m) => m.model_id === modelId));
  const evaluation = chosen &&
    (await api("/evaluations", { filter: JSON.stringify({ evaluation_id: chosen.evaluation_id }), limit: 1 })).data[0];
  if (call !== parityShown) return;
  if (!evaluation || !evaluation.pairs || !evaluation.pairs.length) {
    metrics.textContent = "no evaluation for this model";
    return;
  }
  metrics.textContent = `${evaluation.property} vs ${evaluation.reference_level_of_theory}: n=${evaluation.n}` +
    (evaluation.mae !== null && evaluation.mae !== undefined ? `, MAE=${evaluation.mae.toFixed(3)} ${evaluation.unit}` : "");
  const size = 360, pad = 48;
  const values = evaluation.pairs.flatMap((p) => [Number(p.predicted), Number(p.reference)]);
  let lo = Math.min(...values), hi = Math.max(...values);
  const margin = (hi - lo) * 0.05 || 0.5;
  lo -= margin; hi += margin;
  const scale = (v) => pad + ((v - lo) / (hi - lo)) * (size - 2 * pad);
  const plot = svg("svg", { id: "parity-svg", "data-model": modelId, width: size, height: size, viewBox: `0 0 ${size} ${size}`, role: "img" });
  plot.appendChild(svg("line", { class: "axis", x1: pad, y1: size - pad, x2: size - pad, y2: size - pad }));
  plot.appendChild(svg("line", { class: "axis", x1: pad, y1: pad, x2: pad, y2: size - pad }));
  plot.appendChild(svg("line", { class: "diagonal", x1: scale(lo), y1: size - scale(lo), x2: scale(hi), y2: size - scale(hi) }));
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    plot.appendChild(svg("text", { x: scale(v), y: size - pad + 16, "text-anchor": "middle" }, v.toFixed(1)));
    plot.appendChild(svg("text", { x: pad - 6, y: size - scale(v) + 4, "text-anchor": "end" }, v.toFixed(1)));
  }
  plot.appendChild(svg("text", { x: size / 2, y: size - 8, "text-anchor": "middle" },
    `reference ${evaluation.reference_level_of_theory} (${evaluation.unit})`));
  plot.appendChild(svg("text", { x: 14, y: size / 2, transform: `rotate(-90 14 ${size / 2})`, "text-anchor": "middle" },
    `predicted (${evaluation.unit})`));
  for (const pair of evaluation.pairs) {
    const dot = svg("circle", { class: "point", cx: scale(Number(pair.reference)), cy: size - scale(Number(pair.predicted)), r: 3.5 });
    dot.appendChild(svg("title", {}, `${pair.structure_id}: ${fmt(Number(pair.predicted))} vs ${fmt(Number(pair.reference))}`));
    plot.appendChild(dot);
  }
  box.appendChild(plot);
}

// -- provenance ----------------------------------------------------------------------------
const COLUMN = { source: 0, job: 0, structure: 1, calculation: 1, model: 1, prediction: 2, evaluation: 2 };

async function showProvenance(predictionId) {
  const info = document.getElementById("provenance-info");
  const box = document.getElementById("provenance");
  box.replaceChildren();
  try {
    const lineage = await api(`/provenance/${encodeURIComponent(predictionId)}`);
    info.replaceChildren(
      el("div", { id: "prov-prediction" }, `prediction ${lineage.prediction.prediction_id}: ${lineage.prediction.property} = ${fmt(lineage.prediction.value)} ${lineage.prediction.unit}`),
      el("div", { id: "prov-model" }, lineage.model ? `model ${lineage.model.name} v${lineage.model.version} (${lineage.model.model_id})` : "model missing"),
      el("div", { id: "prov-job" }, `job ${lineage.job_uuid || "unknown"}`),
      el("div", { id: "prov-structure" }, lineage.structure ? `structure ${lineage.structure.structure_id} (${lineage.structure.reduced_formula})` : "structure missing"),
    );
    box.appendChild(drawGraph(lineage.nodes, lineage.edges));
  } catch (error) {
    info.replaceChildren(el("div", { class: "error" }, error.message));
  }
}

function drawGraph(nodes, edges) {
  const width = 220, height = 46, gapX = 80, gapY = 24;
  const columns = [[], [], []];
  for (const node of nodes) columns[COLUMN[node.kind] ?? 1].push(node);
  const position = new Map();
  columns.forEach((column, c) => column.forEach((node, r) => {
    position.set(node.id, { x: 10 + c * (width + gapX), y: 10 + r * (height + gapY) });
  }));
  const rows = Math.max(...columns.map((c) => c.length), 1);
  const graph = svg("svg", { id: "provenance-svg", width: 3 * width + 2 * gapX + 20, height: rows * (height + gapY) + 20 });
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto" });
  marker.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#555" }));
  defs.appendChild(marker);
  graph.appendChild(defs);
  for (const edge of edges) {
    const a = position.get(edge.source), b = position.get(edge.target);
    if (!a || !b) continue;
    const line = svg("path", { class: "edge", "data-relation": edge.relation,
      d: `M${a.x + width},${a.y + height / 2} C${a.x + width + gapX / 2},${a.y + height / 2} ${b.x - gapX / 2},${b.y + height / 2} ${b.x},${b.y + height / 2}` });
    line.appendChild(svg("title", {}, edge.relation));
    graph.appendChild(line);
  }
  for (const node of nodes) {
    const p = position.get(node.id);
    const group = svg("g", { class: `node ${node.kind}`, "data-kind": node.kind, "data-id": node.id, transform: `translate(${p.x},${p.y})` });
    group.appendChild(svg("rect", { width, height }));
    group.appendChild(svg("text", { x: 8, y: 17 }, node.kind));
    group.appendChild(svg("text", { x: 8, y: 34 }, node.label.length > 34 ? node.label.slice(0, 33) + "…" : node.label));
    group.appendChild(svg("title", {}, node.id));
    graph.appendChild(group);
  }
  return graph;
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("search-form").addEventListener("submit", search);
  document.getElementById("model-select").addEventListener("change", (e) => drawParity(e.target.value));
  loadStats();
  try {
    await loadModels();
  } catch (error) {
    document.getElementById("parity-metrics").textContent = error.message;
  }
  document.body.setAttribute("data-ready", "true");
});
