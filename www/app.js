// The scan page over the bdaudit-web wasm package (scripts/build-web builds it into ./pkg).
// The model is loaded and scanned in a module worker (worker.js) so the page stays responsive.
import { BdauditClient, parseNumLabels, parseProbeTexts, parseSentences, parseTriggers, triggerText } from "./bdaudit-scan.js";

const $ = (id) => document.getElementById(id);
const client = new BdauditClient();
// The end-to-end test makes this page's worker crash through it (a "panicForTests" request).
window.bdauditClient = client;

// ?backend=auto|webgpu|cpu presets the backend choice (links, benchmarks: scripts/bench-web).
const backendParam = new URLSearchParams(location.search).get("backend");
if (backendParam) {
  if (![...$("backend-choice").options].some((o) => o.value === backendParam)) {
    show("error", `?backend=${backendParam}: use auto, webgpu or cpu`);
  } else {
    $("backend-choice").value = backendParam;
  }
}

// Chosen files, by role; the file inputs and the drop zone both fill it.
const chosen = { model: null, config: null, tokenizer: null };
let loadedKey = null;
let loaded = null; // { backend, labels, loadReport, hasBase }
let lastReport = null;

function show(id, text) {
  $(id).textContent = text;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function showChosen() {
  const names = Object.entries(chosen).map(([role, f]) => `${role}: ${f ? `${f.name} (${(f.size / 1048576).toFixed(1)} MB)` : "—"}`);
  show("chosen", names.join(" · "));
}

for (const role of Object.keys(chosen)) {
  $(role).addEventListener("change", () => {
    chosen[role] = $(role).files[0] ?? null;
    showChosen();
  });
}

// Dropped files go to a role by name: *.safetensors, config*.json, tokenizer*.json.
function roleOf(file) {
  const name = file.name.toLowerCase();
  if (name.endsWith(".safetensors")) return "model";
  if (name.includes("tokenizer") && name.endsWith(".json")) return "tokenizer";
  if (name.includes("config") && name.endsWith(".json")) return "config";
  return null;
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const ignored = [];
  for (const file of e.dataTransfer.files) {
    const role = roleOf(file);
    if (role) chosen[role] = file;
    else ignored.push(file.name);
  }
  showChosen();
  show("error", ignored.length ? `ignored ${ignored.join(", ")}: not model.safetensors, config.json or tokenizer.json` : "");
});

function selected(roles, prefix = "") {
  const files = roles.map((role) => (prefix ? $(`${prefix}${role}`).files[0] : chosen[role]));
  const missing = ["model.safetensors", "config.json", "tokenizer.json"].filter((_, i) => !files[i]);
  return { files, missing };
}

const buffers = async ([model, config, tokenizer]) => {
  const [m, c, t] = await Promise.all([model, config, tokenizer].map((f) => f.arrayBuffer()));
  return { model: m, config: c, tokenizer: t };
};
const fileKey = (files) => files.map((f) => (f ? [f.name, f.size, f.lastModified] : null));

// Loads the checkpoint (and the base, if all three base files are chosen) unless the same
// files and options are already loaded.
async function load() {
  const roles = ["model", "config", "tokenizer"];
  const { files, missing } = selected(roles);
  if (missing.length) throw new Error(`choose ${missing.join(", ")}`);
  const base = selected(roles, "base-");
  if (base.missing.length && base.missing.length < 3) throw new Error(`base checkpoint: choose ${base.missing.join(", ")} too, or none`);
  const useBase = base.missing.length === 0;
  const backend = $("backend-choice").value;
  const numLabels = parseNumLabels($("num-labels").value);
  const key = JSON.stringify([client.spawns, fileKey(files), useBase && fileKey(base.files), backend, numLabels]);
  if (loaded && key === loadedKey) return loaded;
  loaded = null;
  loadedKey = null;
  show("backend", "none");
  show("backend-reason", "");
  show("progress", "loading the model…");
  const t0 = performance.now();
  // The budget is checked on the file's size, before the file is read into memory.
  await client.checkSize(files[0].size);
  if (useBase) await client.checkSize(base.files[0].size);
  loaded = await client.load(await buffers(files), {
    backend,
    numLabels,
    base: useBase ? await buffers(base.files) : null,
  });
  loadedKey = key;
  show("backend", loaded.backend);
  show("backend-reason", loaded.backendReason);
  const r = loaded.loadReport;
  const head = r.initialised.length ? `; new head: ${r.initialised.join(", ")}` : "";
  show("progress", `loaded ${r.num_params.toLocaleString()} parameters on ${loaded.backend} (${loaded.backendReason}) in ${ms(t0)}${head}`);
  return loaded;
}

function ms(t0) {
  return `${Math.round(performance.now() - t0)} ms`;
}

async function probeTexts() {
  let text = $("probes").value;
  const file = $("probe-file").files[0];
  if (!text.trim() && file) text = await file.text();
  const texts = parseProbeTexts(text);
  return texts.length ? texts : undefined;
}

async function scan() {
  show("error", "");
  $("scan").disabled = true;
  $("classify").disabled = true;
  try {
    await load();
    const options = {
      probeTexts: await probeTexts(),
      triggers: parseTriggers($("triggers").value),
      sentences: parseSentences($("sentences").value),
    };
    const t0 = performance.now();
    show("progress", "scanning…");
    const { report } = await client.scan(options, ({ stage, done, total }) => {
      const pct = total ? ` (${Math.round((100 * done) / total)}%)` : "";
      show("progress", `scanning on ${loaded.backend}: ${stage} ${done}/${total}${pct}`);
    });
    lastReport = report;
    renderReport(report);
    show("progress", `scanned ${report.probe_texts.length} probe texts with ${report.candidates.length} candidate triggers on ${report.backend} in ${ms(t0)}`);
  } catch (e) {
    show("progress", "");
    show("error", e instanceof Error ? e.message : String(e));
  } finally {
    $("scan").disabled = false;
    $("classify").disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Rendering the report (schema: core/src/report.rs)

const pct = (x) => `${(100 * x).toFixed(1)}%`;

function renderReport(report) {
  $("results").hidden = false;
  const labelName = (k) => (k == null ? "—" : report.labels[k] ?? String(k));

  const v = report.verdict;
  $("verdict").className = `verdict ${v.level}`;
  $("verdict").dataset.level = v.level;
  show("level", v.level);
  show("summary", v.summary);
  $("evidence").replaceChildren(...v.evidence.map((e) => el("li", {}, e)));
  show("backend", report.backend);
  show("backend-reason", report.backend_reason ?? "");
  const seconds = report.seconds != null ? ` in ${report.seconds.toFixed(2)} s` : "";
  show("meta", `${report.layers} layers, ${report.probe_texts.length} probe texts, ${report.candidates.length} candidates${seconds}, schema ${report.schema}`);

  $("attention-map").replaceChildren(heatmap(report.attention, false));
  // The scan maps the strongest candidate and the others that moved texts, strongest first.
  const mapped = report.candidates.filter((c) => c.drift);
  const choice = $("drift-choice");
  choice.replaceChildren(...mapped.map((c, i) => el("option", { value: String(i) }, triggerText(c.trigger))));
  choice.disabled = mapped.length < 2;
  const showDrift = () => {
    const c = mapped[Number(choice.value)];
    $("drift-map").replaceChildren(heatmap(c ? c.drift : null, true));
    if (c && c.heads.length) {
      const rows = c.heads.map((h) => [`layer ${h.layer}, head ${h.head}`, h.drift.toExponential(2)]);
      $("heads").replaceChildren(el("h3", {}, `Heads that lock onto ${triggerText(c.trigger)}`), table(["head", "variance drift"], rows, [1]));
    } else {
      $("heads").replaceChildren();
    }
  };
  choice.onchange = showDrift;
  showDrift();

  const rows = report.candidates.map((c) => [
    triggerText(c.trigger),
    c.screened_out ? `${c.source} (screened out)` : c.source,
    labelName(c.shift.target),
    pct(c.shift.asr),
    pct(c.shift.pacc),
    pct(c.shift.clean_accuracy),
    !c.long_texts ? "-" : c.long_texts.texts ? `${pct(c.long_texts.asr)} of ${c.long_texts.texts}` : "no long text",
  ]);
  const cands = table(["trigger", "source", "target class", "ASR", "PACC", "clean acc.", "ASR, long texts"], rows, [3, 4, 5, 6]);
  cands.id = "candidate-table";
  $("candidates").replaceChildren(cands);

  $("confusions").replaceChildren(...report.candidates.slice(0, 3).map((c) => confusion(c, report.labels)));

  if (report.token_scores && report.token_scores.length) {
    $("tokens-section").hidden = false;
    const tokRows = report.token_scores.slice(0, 30).map((s, i) => [String(i + 1), s.token, String(s.id), s.score.toFixed(4)]);
    $("tokens").replaceChildren(table(["rank", "token", "id", "drift"], tokRows, [0, 2, 3]));
  } else {
    $("tokens-section").hidden = true;
  }

  show("probe-count", String(report.probe_texts.length));
  $("probe-list").replaceChildren(...report.probe_texts.map((t) => el("li", {}, t)));
}

function table(head, rows, numeric = []) {
  const t = el("table");
  const hr = t.createTHead().insertRow();
  head.forEach((h, i) => hr.append(el("th", numeric.includes(i) ? { class: "num" } : {}, h)));
  const body = t.createTBody();
  for (const r of rows) {
    const tr = body.insertRow();
    r.forEach((cell, i) => tr.append(el("td", numeric.includes(i) ? { class: "num" } : {}, cell)));
  }
  return t;
}

// A layers × heads grid of coloured cells (CSS grid); the value is in each cell's title.
function heatmap(scores, diverging) {
  if (!scores) return el("p", { class: "muted" }, "not computed");
  const maxHeads = Math.max(...scores.heads);
  const flat = scores.scores.flat();
  const max = Math.max(...flat.map(Math.abs), 1e-30);
  const grid = el("div", { class: "heatmap", style: `grid-template-columns: 4.5rem repeat(${maxHeads}, 2.4rem)` });
  grid.append(el("div", { class: "axis" }, ""));
  for (let h = 0; h < maxHeads; h++) grid.append(el("div", { class: "axis" }, `h${h}`));
  scores.scores.forEach((layer, l) => {
    grid.append(el("div", { class: "axis" }, `layer ${l}`));
    for (let h = 0; h < maxHeads; h++) {
      const value = layer[h];
      if (value == null) {
        grid.append(el("div", { class: "cell" }));
        continue;
      }
      const a = Math.min(1, Math.abs(value) / max);
      const color = diverging && value < 0 ? `rgba(21, 101, 192, ${a})` : diverging ? `rgba(179, 38, 30, ${a})` : `rgba(94, 53, 177, ${a})`;
      grid.append(el("div", { class: "cell", style: `background: ${color}; outline: 1px solid #ddd`, title: `layer ${l}, head ${h}: ${value.toExponential(3)}` }));
    }
  });
  const legend = el("div", { class: "legend" }, diverging ? `±${max.toExponential(2)} at full colour` : `0 … ${max.toExponential(2)}`);
  return el("div", {}, grid, legend);
}

// Clean prediction (rows) × triggered prediction (columns), from the two confusion matrices:
// both are indexed by the same probe label (the clean prediction), so the triggered one is it.
function confusion(candidate, labels) {
  const counts = candidate.shift.confusion.counts;
  const n = counts.length;
  const name = (k) => labels[k] ?? String(k);
  const t = el("table", { class: "confusion" });
  const hr = t.createTHead().insertRow();
  hr.append(el("th", {}, "clean \\ triggered"));
  for (let j = 0; j < n; j++) hr.append(el("th", { class: "num" }, name(j)));
  const body = t.createTBody();
  for (let i = 0; i < n; i++) {
    const tr = body.insertRow();
    tr.append(el("th", {}, name(i)));
    for (let j = 0; j < n; j++) {
      const hit = i !== j && j === candidate.shift.target && counts[i][j] > 0;
      tr.append(el("td", { class: hit ? "num hit" : "num" }, String(counts[i][j])));
    }
  }
  return el("div", {}, el("h3", {}, `${triggerText(candidate.trigger)} (ASR ${pct(candidate.shift.asr)})`), t);
}

$("download").addEventListener("click", () => {
  if (!lastReport) return;
  const blob = new Blob([JSON.stringify(lastReport, null, 2)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: `bdaudit-report-${lastReport.verdict.level}.json` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
});

// ---------------------------------------------------------------------------------------------
// Classify (the same loaded checkpoint)

function renderPredictions(predictions, labels) {
  const rows = predictions.map((p) => [p.text, p.label, ...p.probs.map((x) => x.toFixed(4))]);
  $("output").replaceChildren(table(["text", "label", ...labels.map((l) => `p(${l})`)], rows, labels.map((_, i) => i + 2)));
}

async function classify() {
  show("error", "");
  $("classify").disabled = true;
  $("scan").disabled = true;
  try {
    const l = await load();
    const texts = $("texts").value.split("\n").map((t) => t.trim()).filter((t) => t);
    const t0 = performance.now();
    show("progress", "classifying…");
    const { predictions } = await client.classify(texts);
    renderPredictions(predictions, l.labels);
    show("progress", `classified ${predictions.length} sentences in ${ms(t0)} on ${l.backend}`);
  } catch (e) {
    show("progress", "");
    show("error", e instanceof Error ? e.message : String(e));
  } finally {
    $("classify").disabled = false;
    $("scan").disabled = false;
  }
}

$("scan").addEventListener("click", scan);
$("classify").addEventListener("click", classify);
showChosen();
