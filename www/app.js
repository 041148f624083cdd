// Minimal page over the bdaudit-web wasm package (built by scripts/build-web into ./pkg).
import init, { Auditor } from "./pkg/bdaudit_web.js";

const $ = (id) => document.getElementById(id);
const ready = init();

let auditor = null;
let loadedKey = null;

function show(id, text) {
  $(id).textContent = text;
}

function selected() {
  const files = ["model", "config", "tokenizer"].map((id) => $(id).files[0]);
  const missing = ["model.safetensors", "config.json", "tokenizer.json"].filter((_, i) => !files[i]);
  if (missing.length) throw new Error(`choose ${missing.join(", ")}`);
  return files;
}

async function bytes(file) {
  return new Uint8Array(await file.arrayBuffer());
}

// Loads the checkpoint unless the same files and options are already loaded.
async function load() {
  const files = selected();
  const gpu = $("gpu").checked;
  const numLabels = $("num-labels").value.trim() === "" ? undefined : Number($("num-labels").value);
  const key = JSON.stringify([files.map((f) => [f.name, f.size, f.lastModified]), gpu, numLabels]);
  if (auditor && key === loadedKey) return auditor;
  if (auditor) auditor.free();
  auditor = null;
  loadedKey = null;
  show("status", "loading…");
  const t0 = performance.now();
  const [model, config, tokenizer] = await Promise.all(files.map(bytes));
  await ready;
  auditor = await Auditor.load(model, config, tokenizer, gpu, numLabels);
  loadedKey = key;
  show("backend", auditor.backend());
  const report = JSON.parse(auditor.loadReport());
  const head = report.initialised.length ? `; new head: ${report.initialised.join(", ")}` : "";
  show("status", `loaded ${report.num_params.toLocaleString()} parameters in ${ms(t0)}${head}`);
  return auditor;
}

function ms(t0) {
  return `${Math.round(performance.now() - t0)} ms`;
}

function render(predictions, labels) {
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const name of ["text", "label", ...labels.map((l) => `p(${l})`)]) {
    const th = document.createElement("th");
    th.textContent = name;
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const p of predictions) {
    const row = body.insertRow();
    row.insertCell().textContent = p.text;
    row.insertCell().textContent = p.label;
    for (const prob of p.probs) {
      const cell = row.insertCell();
      cell.className = "num";
      cell.textContent = prob.toFixed(4);
    }
  }
  $("output").replaceChildren(table);
}

async function classify() {
  show("error", "");
  $("classify").disabled = true;
  try {
    const a = await load();
    const texts = $("texts").value.split("\n").map((t) => t.trim()).filter((t) => t);
    const t0 = performance.now();
    show("status", "classifying…");
    const predictions = JSON.parse(await a.classify(JSON.stringify(texts)));
    render(predictions, JSON.parse(a.labels()));
    show("status", `classified ${predictions.length} sentences in ${ms(t0)} on ${a.backend()}`);
  } catch (e) {
    show("status", "");
    show("error", e instanceof Error ? e.message : String(e));
  } finally {
    $("classify").disabled = false;
  }
}

$("classify").addEventListener("click", classify);
