// vecbox's web page: a small API client (VecboxApi) and the page that uses it. Plain script, no build step.
"use strict";

/** A thin client of the vecbox HTTP API: JSON in and out, the server's error message on failure. */
class VecboxApi {
  constructor(base = "", key = () => "") { this.base = base; this.key = key; }

  async request(method, path, body) {
    const headers = { "Accept": "application/json" };
    const key = this.key();
    if (key) headers["X-API-Key"] = key;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(this.base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const message = (data.error && data.error.message) || `${res.status} ${res.statusText}`;
      const err = new Error(res.status === 401 ? `${message} — type the server's API key above` : message);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  static qs(params) {
    const parts = Object.entries(params).filter(([, v]) => v !== undefined && v !== null)
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(typeof v === "object" ? JSON.stringify(v) : v)}`);
    return parts.length ? "?" + parts.join("&") : "";
  }

  collections() { return this.request("GET", "/collections"); }
  info(name) { return this.request("GET", `/collections/${encodeURIComponent(name)}`); }
  search(name, body) { return this.request("POST", `/collections/${encodeURIComponent(name)}/search`, body); }
  ids(name, where) { return this.request("GET", `/collections/${encodeURIComponent(name)}/ids` + VecboxApi.qs({ where })); }
  map(name, points = 2000) { return this.request("GET", `/collections/${encodeURIComponent(name)}/map` + VecboxApi.qs({ points })); }
  neighbors(name, id, k, where) {
    return this.request("GET", `/collections/${encodeURIComponent(name)}/neighbors` + VecboxApi.qs({ id, k, where }));
  }
}

const $ = (sel) => document.querySelector(sel);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
};
const SVG = "http://www.w3.org/2000/svg";
const svgEl = (tag, attrs) => {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
};
const PALETTE = ["#2f6fde", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#0c8599", "#f08c00", "#5c940d", "#a61e4d", "#1864ab"];
const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];  // viridis stops
const OPS = [["$eq", "="], ["$ne", "≠"], ["$gt", ">"], ["$gte", "≥"], ["$lt", "<"], ["$lte", "≤"],
  ["$in", "in"], ["$nin", "not in"], ["$exists", "exists"]];

const state = { name: null, info: null, map: null, where: null, selected: null, index: new Map() };
const api = new VecboxApi("", () => localStorage.getItem("vecbox.apiKey") || "");

function status(text, error = false) {
  const s = $("#status");
  s.textContent = text;
  s.classList.toggle("error", error);
}

async function guarded(what, fn) {
  try { return await fn(); } catch (err) { status(`${what}: ${err.message}`, true); return undefined; }
}

function ramp(t) {
  t = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(t)), f = t - i;
  const c = RAMP[i].map((a, j) => Math.round(a + (RAMP[i + 1][j] - a) * f));
  return `rgb(${c.join(",")})`;
}

function fmtBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function fmtValue(v) { return typeof v === "object" ? JSON.stringify(v) : String(v); }

function metaChips(meta) {
  const box = el("div", { class: "meta" });
  for (const [k, v] of Object.entries(meta || {})) box.append(el("span", { title: k }, `${k}: ${fmtValue(v)}`));
  return box;
}

// ---- collections and statistics ------------------------------------------------------------------

async function loadCollections() {
  const data = await guarded("listing collections", () => api.collections());
  if (!data) return;
  const select = $("#collection");
  select.replaceChildren(...data.collections.map((n) => el("option", { value: n }, n)));
  if (!data.collections.length) { status("No collections under this server's root yet."); return; }
  const wanted = decodeURIComponent(location.hash.slice(1));
  select.value = data.collections.includes(wanted) ? wanted : data.collections[0];
  await openCollection(select.value);
}

async function openCollection(name) {
  state.name = name; state.selected = null; state.where = null;
  location.hash = encodeURIComponent(name);
  $("#hits").replaceChildren(); $("#hits-head").textContent = "";
  $("#neighbours").replaceChildren(); $("#neighbours-of").textContent = "";
  $("#filter-rows").replaceChildren(); renderWhere();
  status(`Opening ${name}…`);
  const info = await guarded(`opening ${name}`, () => api.info(name));
  if (!info) return;
  state.info = info;
  setModes(info);
  renderStats();
  status(`Loading the map of ${name}…`);
  const map = await guarded("loading the map", () => api.map(name));
  if (!map) return;
  state.map = map;
  state.index = new Map(map.ids.map((id, i) => [id, i]));
  $("#field-names").replaceChildren(...Object.keys(map.fields).map((f) => el("option", { value: f })));
  const color = $("#color-by");
  const previous = color.value;
  color.replaceChildren(el("option", { value: "" }, "nothing"), el("option", { value: "@anomaly" }, "anomaly score (kNN)"),
    ...Object.keys(map.fields).map((f) => el("option", { value: f }, f)));
  color.value = [...color.options].some((o) => o.value === previous) ? previous : "";
  renderStats();
  drawMap();
  status(`${name}: ${info.count.toLocaleString()} items`);
}

function setModes(info) {
  const mode = $("#mode");
  const can = { dense: info.model !== null, lexical: info.lexical !== null, hybrid: info.model !== null && info.lexical !== null };
  for (const opt of mode.options) opt.disabled = !can[opt.value];
  if (!can[mode.value]) mode.value = ["hybrid", "dense", "lexical"].find((m) => can[m]) || mode.value;
  const none = !can.dense && !can.lexical;
  $("#query").disabled = none; $("#search-button").disabled = none;
  $("#query").placeholder = none ? "No model and no lexical index: click a point on the map" : "Search the collection…";
}

function renderStats() {
  const i = state.info, m = state.map;
  if (!i) return;
  const rows = [["items", i.count.toLocaleString()], ["deleted, not yet compacted", i.tombstones],
    ["dimension", i.dim], ["metric", i.metric], ["model", i.model || "none (vectors only)"], ["version", i.version],
    ["segments", i.segments], ["on disk", fmtBytes(i.bytes_on_disk)],
    ["bytes per vector", i.bytes_per_vector + (i.codec ? ` (${i.codec})` : "")],
    ["ANN index", i.index ? `${i.index.kind || i.index.type || "yes"}` : "none (exact search)"],
    ["lexical (BM25)", i.lexical ? (i.lexical.language || "on") : "off"]];
  if (m) {
    rows.push(["map sample", `${m.sampled.toLocaleString()} of ${m.total.toLocaleString()}`]);
    rows.push(["PCA variance shown", `${(100 * (m.variance[0] + m.variance[1])).toFixed(1)} %`]);
    rows.push(["metadata fields", Object.keys(m.fields).join(", ") || "none"]);
  }
  $("#stats").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
}

// ---- the filter builder ----------------------------------------------------------------------------

function addFilterRow() {
  const row = el("div", { class: "filter-row" },
    el("input", { class: "field", list: "field-names", placeholder: "field", "aria-label": "filter field" }),
    el("select", { class: "op", "aria-label": "filter operator" }, ...OPS.map(([v, t]) => el("option", { value: v }, t))),
    el("input", { class: "value", placeholder: "value (a, b for in)", "aria-label": "filter value" }),
    el("button", { type: "button", class: "remove", title: "remove", onclick: () => { row.remove(); filterChanged(); } }, "×"));
  row.addEventListener("change", filterChanged);
  $("#filter-rows").append(row);
  return row;
}

function typed(field, text) {
  const kind = state.map && state.map.fields[field] ? state.map.fields[field].kind : null;
  text = text.trim();
  if (kind === "number" && text !== "" && !Number.isNaN(Number(text))) return Number(text);
  if (kind === "bool" && (text === "true" || text === "false")) return text === "true";
  if (kind === "string") return text;
  try { return JSON.parse(text); } catch { return text; }
}

function buildWhere() {
  const parts = [];
  for (const row of document.querySelectorAll(".filter-row")) {
    const field = row.querySelector(".field").value.trim(), op = row.querySelector(".op").value;
    const raw = row.querySelector(".value").value;
    if (!field) continue;
    let value;
    if (op === "$in" || op === "$nin") value = raw.split(",").filter((s) => s.trim() !== "").map((s) => typed(field, s));
    else if (op === "$exists") value = !/^(false|no|0)$/i.test(raw.trim());
    else value = typed(field, raw);
    parts.push({ [field]: { [op]: value } });
  }
  return parts.length === 0 ? null : parts.length === 1 ? parts[0] : { $and: parts };
}

function renderWhere() { $("#where-json").textContent = state.where ? JSON.stringify(state.where) : "none"; }

async function filterChanged() {
  state.where = buildWhere();
  renderWhere();
  await shadeMap();
  if ($("#query").value.trim()) await runSearch();
}

// ---- search ------------------------------------------------------------------------------------------

function hitItem(hit, list) {
  const li = el("li", { class: "hit", dataset: { id: hit.id }, onclick: () => select(hit.id) },
    el("span", { class: "score" }, Number(hit.score).toFixed(4)), el("span", { class: "id" }, hit.id),
    hit.document ? el("div", { class: "doc" }, hit.document.length > 300 ? hit.document.slice(0, 300) + "…" : hit.document) : null,
    metaChips(hit.metadata));
  list.append(li);
}

async function runSearch() {
  const text = $("#query").value.trim();
  if (!text || !state.name) return;
  const body = { text, k: Math.max(1, Number($("#k").value) || 10), mode: $("#mode").value, where: state.where };
  status(`Searching (${body.mode})…`);
  const t0 = performance.now();
  const res = await guarded("search", () => api.search(state.name, body));
  if (!res) return;
  const list = $("#hits");
  list.replaceChildren();
  res.hits.forEach((h) => hitItem(h, list));
  const ms = performance.now() - t0;
  $("#hits-head").textContent = `${res.hits.length} hits · ${body.mode} · ${ms.toFixed(0)} ms round trip`;
  status(res.hits.length ? `${res.hits.length} hits` : "No hits: loosen the filter or try other words");
  markHits(res.hits.map((h) => h.id));
}

// ---- the map -----------------------------------------------------------------------------------------

function colourer() {
  const m = state.map, by = $("#color-by").value;
  const legend = $("#legend");
  legend.replaceChildren();
  if (!by) return () => PALETTE[0];
  if (by === "@anomaly" || (m.fields[by] && m.fields[by].kind === "number")) {
    const values = by === "@anomaly" ? m.anomaly.map((a) => (a === null ? NaN : a)) : m.metadata.map((md) => (md && typeof md[by] === "number" ? md[by] : NaN));
    const finite = values.filter(Number.isFinite).sort((a, b) => a - b);
    const lo = finite[0] ?? 0, hi = finite[Math.floor(0.99 * (finite.length - 1))] ?? 1;  // the top 1 % saturate
    legend.append(el("span", {}, fmtValue(Number(lo.toPrecision(4)))),
      el("span", { class: "ramp", style: `background: linear-gradient(90deg, ${RAMP.map((c) => `rgb(${c})`).join(",")})` }),
      el("span", {}, fmtValue(Number(hi.toPrecision(4))) + (by === "@anomaly" ? " (more isolated)" : "")));
    return (i) => (Number.isFinite(values[i]) ? ramp((values[i] - lo) / (hi - lo || 1)) : "#c9ccd3");
  }
  const top = (m.fields[by] ? m.fields[by].values : []).slice(0, PALETTE.length).map(([v]) => v);
  top.forEach((v, j) => legend.append(el("span", {}, el("i", { style: `background:${PALETTE[j]}` }), fmtValue(v))));
  legend.append(el("span", {}, el("i", { style: "background:#c9ccd3" }), "other / missing"));
  return (i) => {
    const v = m.metadata[i] ? m.metadata[i][by] : undefined;
    const j = top.findIndex((t) => t === v);
    return j >= 0 ? PALETTE[j] : "#c9ccd3";
  };
}

function drawMap() {
  const svg = $("#map"), m = state.map;
  svg.replaceChildren();
  if (!m || !m.sampled) { $("#map-note").textContent = "nothing to draw yet"; return; }
  const box = svg.getBoundingClientRect(), w = box.width || 600, h = box.height || 460, pad = 12;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const [x0, x1] = [Math.min(...m.x), Math.max(...m.x)], [y0, y1] = [Math.min(...m.y), Math.max(...m.y)];
  const sx = (x) => pad + ((x - x0) / (x1 - x0 || 1)) * (w - 2 * pad);
  const sy = (y) => h - pad - ((y - y0) / (y1 - y0 || 1)) * (h - 2 * pad);
  state.xy = m.x.map((x, i) => [sx(x), sy(m.y[i])]);
  const colour = colourer(), r = m.sampled > 3000 ? 2.2 : m.sampled > 500 ? 3.2 : 5;
  svg.append(svgEl("g", { id: "links" }));
  const g = svgEl("g", { id: "points" });
  m.ids.forEach((id, i) => {
    const c = svgEl("circle", { cx: state.xy[i][0].toFixed(1), cy: state.xy[i][1].toFixed(1), r, fill: colour(i), "data-id": id });
    g.append(c);
  });
  svg.append(g);
  $("#map-note").textContent = `${m.sampled.toLocaleString()} of ${m.total.toLocaleString()} items, PCA`;
  shadeMap();
  if (state.selected) markSelection(state.selected, state.neighbourIds || []);
}

function pointAt(target) { return target && target.tagName === "circle" ? target.getAttribute("data-id") : null; }

function showTip(evt) {
  const id = pointAt(evt.target), tip = $("#tip");
  if (!id) { tip.hidden = true; return; }
  const i = state.index.get(id), m = state.map, by = $("#color-by").value;
  const extra = by === "@anomaly" ? `anomaly ${m.anomaly[i] === null ? "n/a (too few points)" : m.anomaly[i].toFixed(4)}` : by && m.metadata[i] && by in m.metadata[i] ? `${by}: ${fmtValue(m.metadata[i][by])}` : null;
  tip.replaceChildren(el("b", {}, id), extra ? el("div", {}, extra) : null, m.documents[i] ? el("div", { class: "doc" }, m.documents[i]) : null);
  const wrap = $("#map-wrap").getBoundingClientRect();
  tip.style.left = `${Math.min(evt.clientX - wrap.left + 12, wrap.width - 240)}px`;
  tip.style.top = `${evt.clientY - wrap.top + 12}px`;
  tip.hidden = false;
}

async function shadeMap() {
  const circles = document.querySelectorAll("#points circle");
  if (!state.where) { circles.forEach((c) => c.classList.remove("dim")); return; }
  const res = await guarded("filter", () => api.ids(state.name, state.where));
  if (!res) return;
  const keep = new Set(res.ids);
  circles.forEach((c) => c.classList.toggle("dim", !keep.has(c.getAttribute("data-id"))));
  status(`${res.ids.length.toLocaleString()} items match the filter`);
}

function markHits(ids) {
  const set = new Set(ids);
  document.querySelectorAll("#points circle").forEach((c) => c.classList.toggle("neighbour", set.has(c.getAttribute("data-id"))));
}

function markSelection(id, neighbourIds) {
  const links = $("#links");
  if (!links) return;
  links.replaceChildren();
  const set = new Set(neighbourIds);
  document.querySelectorAll("#points circle").forEach((c) => {
    const cid = c.getAttribute("data-id");
    c.classList.toggle("selected", cid === id);
    c.classList.toggle("neighbour", set.has(cid));
  });
  const i = state.index.get(id);
  if (i === undefined) return;
  for (const n of neighbourIds) {
    const j = state.index.get(n);
    if (j === undefined) continue;
    links.append(svgEl("line", { x1: state.xy[i][0], y1: state.xy[i][1], x2: state.xy[j][0], y2: state.xy[j][1] }));
  }
  const sel = document.querySelector(`#points circle[data-id="${CSS.escape(id)}"]`);
  if (sel) sel.parentNode.append(sel);  // drawn last: on top
}

async function select(id) {
  state.selected = id;
  document.querySelectorAll("li.hit").forEach((li) => li.classList.toggle("selected", li.dataset.id === id));
  $("#neighbours-of").textContent = `of ${id}`;
  status(`Neighbours of ${id}…`);
  const res = await guarded("neighbours", () => api.neighbors(state.name, id, 10, state.where));
  if (!res) return;
  const list = $("#neighbours");
  list.replaceChildren();
  res.hits.forEach((h) => hitItem(h, list));
  state.neighbourIds = res.hits.map((h) => h.id);
  markSelection(id, state.neighbourIds);
  const outside = res.hits.filter((h) => !state.index.has(h.id)).length;
  status(`${res.hits.length} neighbours of ${id}` + (outside ? ` (${outside} outside the map's sample)` : ""));
}

// ---- wiring ------------------------------------------------------------------------------------------

function init() {
  const key = $("#api-key");
  key.value = localStorage.getItem("vecbox.apiKey") || "";
  key.addEventListener("change", () => { localStorage.setItem("vecbox.apiKey", key.value); loadCollections(); });
  $("#collection").addEventListener("change", (e) => openCollection(e.target.value));
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); runSearch(); });
  $("#add-filter").addEventListener("click", () => addFilterRow().querySelector(".field").focus());
  $("#clear-filter").addEventListener("click", () => { $("#filter-rows").replaceChildren(); filterChanged(); });
  $("#color-by").addEventListener("change", drawMap);
  const svg = $("#map");
  svg.addEventListener("mousemove", showTip);
  svg.addEventListener("mouseleave", () => { $("#tip").hidden = true; });
  svg.addEventListener("click", (e) => { const id = pointAt(e.target); if (id) select(id); });
  let resize;
  window.addEventListener("resize", () => { clearTimeout(resize); resize = setTimeout(drawMap, 150); });
  loadCollections();
}

document.addEventListener("DOMContentLoaded", init);
