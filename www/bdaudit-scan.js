// <bdaudit-scan>: scans a BERT classifier for a backdoor in the visitor's browser and shows a
// compact verdict card. Self-contained: needs only worker.js and pkg/ beside this file.
//
//   <script type="module" src="/bdaudit/bdaudit-scan.js"></script>
//   <bdaudit-scan model="/models/sst2/model.safetensors"
//                 config="/models/sst2/config.json"
//                 tokenizer="/models/sst2/tokenizer.json"></bdaudit-scan>
//
// Optional attributes: probes (URL of probe texts, one per line or TSV with the text in the
// longest column; default: the built-in English movie-review sentences), triggers (extra
// candidate words, space- or comma-separated), sentences (extra candidate sentences,
// separated by "|"), backend ("auto", the default: WebGPU on a
// hardware adapter, else the CPU; "webgpu": even a software adapter; "cpu"), num-labels.
// The URLs are fetched with fetch(): keep them on the page's origin.
// State is reflected in the `state` attribute (loading, scanning, done, error); the element
// fires `bdaudit-report` (detail: the report) or `bdaudit-error` (detail: the message), and
// `element.report` holds the last report.
//
// This module also exports BdauditClient, the promise API over the worker that www/app.js uses.

/** Promise API over worker.js (one worker per client). */
export class BdauditClient {
  constructor() {
    this.nextId = 1;
    this.pending = new Map();
    this.spawn();
  }

  spawn() {
    // Bumped when a crashed worker is replaced: whatever the old one had loaded is gone.
    this.spawns = (this.spawns ?? 0) + 1;
    this.worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
    this.worker.onmessage = (event) => {
      const { id, ok, error, progress, ...body } = event.data;
      const call = this.pending.get(id);
      if (!call) return;
      if (progress) {
        call.onProgress?.(progress);
        return;
      }
      this.pending.delete(id);
      if (ok) call.resolve(body);
      else call.reject(Object.assign(new Error(error), { crashed: body.crashed }));
    };
    // A worker that fails to start (pkg/ missing, a syntax error) rejects everything pending.
    this.worker.onerror = (event) => {
      event.preventDefault?.();
      const message = event.message || "the scan worker failed to start (is pkg/ built? run scripts/build-web)";
      for (const call of this.pending.values()) call.reject(new Error(message));
      this.pending.clear();
    };
  }

  call(request, transfer = [], onProgress = null) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, ...request }, transfer);
    }).catch((e) => {
      // A wasm trap (a panic) leaves the module unusable: start a fresh worker for next time.
      if (e.crashed) {
        this.worker.terminate();
        this.spawn();
        e = new Error(`${e.message}. The scan worker was restarted: scan again to reload the checkpoint`);
      }
      throw e;
    });
  }

  /** files: { model, config, tokenizer } as ArrayBuffers; base: the same or null;
   *  backend: "auto", "webgpu" or "cpu". Resolves to { backend, backendReason, adapter, … }. */
  load(files, { backend = "auto", numLabels = null, base = null } = {}) {
    const transfer = [files.model, files.config, files.tokenizer];
    if (base) transfer.push(base.model, base.config, base.tokenizer);
    return this.call({ type: "load", ...files, backend, numLabels, base }, transfer);
  }

  /** Resolves to { report }; onProgress({ stage, done, total }). */
  scan(options, onProgress) {
    return this.call({ type: "scan", options }, [], onProgress);
  }

  /** The attention-variance probe alone; resolves to { variance: { layers, heads, scores } }. */
  attentionVariance(options = {}, onProgress = null) {
    return this.call({ type: "attentionVariance", options }, [], onProgress);
  }

  /** The trigger-shift probe alone (options: { trigger } or { sentence }, probeTexts, seed);
   *  resolves to { shift }. */
  triggerShift(options, onProgress = null) {
    return this.call({ type: "triggerShift", options }, [], onProgress);
  }

  /** Token scores against the base given at load; resolves to { tokens: [{ id, token, score }] }. */
  tokenScores(top = 20) {
    return this.call({ type: "tokenScores", top });
  }

  /** Rejects with the page's budget message when a model.safetensors of `bytes` is too large
   *  to load: ask before reading the file. */
  checkSize(bytes) {
    return this.call({ type: "checkSize", bytes });
  }

  /** Resolves to { predictions }. */
  classify(texts) {
    return this.call({ type: "classify", texts });
  }

  terminate() {
    this.worker.terminate();
  }
}

/** Probe texts from a text file: plain lines, or TSV with the text in the longest column;
 *  a TSV header line (sentence/text/label) is skipped. */
export function parseProbeTexts(text) {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l);
  const out = [];
  lines.forEach((line, i) => {
    if (!line.includes("\t")) {
      out.push(line);
      return;
    }
    const fields = line.split("\t").map((f) => f.trim());
    if (i === 0 && fields.some((f) => /^(sentence|text|label|idx|review)$/i.test(f))) return;
    out.push(fields.reduce((a, b) => (b.length > a.length ? b : a), ""));
  });
  return out.filter((t) => t);
}

/** Extra trigger words from "cf, mn bb". */
export function parseTriggers(text) {
  return (text || "").split(/[\s,]+/).map((t) => t.trim()).filter((t) => t);
}

/** Extra trigger sentences, one per line, or separated by "|" (an attribute is one line). */
export function parseSentences(text) {
  return (text || "").split(/[\n|]/).map((t) => t.trim()).filter((t) => t);
}

/** The class count a user typed for a bare encoder: empty means "from the checkpoint". */
export function parseNumLabels(text) {
  const t = (text ?? "").trim();
  if (t === "") return null;
  const n = Number(t);
  if (!Number.isInteger(n) || n < 2) throw new Error(`number of classes: ${JSON.stringify(t)} is not a whole number of at least 2`);
  return n;
}

/** A trigger as a person would write it (core's `trigger_text`). */
export function triggerText(t) {
  if (t.kind === "badnets") return t.words.join(" | ");
  if (t.kind === "addsent") return `"${t.sentence}"`;
  return JSON.stringify(t);
}

const STYLE = `
  :host { display: block; font: 14px/1.4 system-ui, sans-serif; max-width: 30rem; }
  .card { border: 1px solid #ccc; border-radius: 8px; padding: 0.8rem 1rem; background: #fff; color: #222; }
  .title { font-weight: 600; margin-bottom: 0.3rem; }
  .level { display: inline-block; padding: 0.1rem 0.5rem; border-radius: 4px; font-weight: 600; color: #fff; background: #777; }
  .level.suspicious { background: #b3261e; }
  .level.inconclusive { background: #b26a00; }
  .level.clean { background: #2e7d32; }
  .summary { margin: 0.4rem 0; }
  .meta, .status { color: #555; font-size: 0.9em; }
  .error { color: #a00; white-space: pre-wrap; }
  [hidden] { display: none !important; }
`;

class BdauditScanElement extends HTMLElement {
  static get observedAttributes() {
    return ["model", "config", "tokenizer", "probes", "triggers", "sentences", "backend", "num-labels"];
  }

  constructor() {
    super();
    this.report = null;
    this.generation = 0;
    const root = this.attachShadow({ mode: "open" });
    root.innerHTML = `<style>${STYLE}</style>
      <div class="card" part="card">
        <div class="title">bdaudit backdoor scan</div>
        <div class="status" part="status"></div>
        <div class="result" hidden>
          <span class="level" part="level"></span>
          <div class="summary" part="summary"></div>
          <div class="meta" part="meta"></div>
        </div>
        <div class="error" part="error" role="alert" hidden></div>
      </div>`;
    this.$ = (sel) => root.querySelector(sel);
  }

  connectedCallback() {
    this.schedule();
  }

  disconnectedCallback() {
    this.generation++;
    this.client?.terminate();
    this.client = null;
  }

  attributeChangedCallback() {
    if (this.isConnected) this.schedule();
  }

  // Attribute changes in one task start one scan.
  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.run();
    });
  }

  setState(state, status) {
    this.setAttribute("state", state);
    this.$(".status").textContent = status;
  }

  async run() {
    const urls = ["model", "config", "tokenizer"].map((a) => this.getAttribute(a));
    if (urls.some((u) => !u)) {
      this.setState("idle", "needs model, config and tokenizer attributes");
      return;
    }
    const generation = ++this.generation;
    const current = () => generation === this.generation;
    this.$(".result").hidden = true;
    this.$(".error").hidden = true;
    try {
      this.setState("loading", "fetching the checkpoint…");
      this.client ??= new BdauditClient();
      // The model's size (Content-Length) is checked against the budget before its body is read.
      const checkSize = (bytes) => this.client.checkSize(bytes);
      const [model, config, tokenizer] = await Promise.all(urls.map((u, i) => fetchBytes(u, i === 0 ? checkSize : null)));
      const options = { triggers: parseTriggers(this.getAttribute("triggers")), sentences: parseSentences(this.getAttribute("sentences")) };
      const probes = this.getAttribute("probes");
      if (probes) options.probeTexts = parseProbeTexts(new TextDecoder().decode(await fetchBytes(probes)));
      if (!current()) return;
      this.setState("loading", "loading the model…");
      const loaded = await this.client.load(
        { model, config, tokenizer },
        { backend: this.getAttribute("backend") ?? "auto", numLabels: parseNumLabels(this.getAttribute("num-labels")) },
      );
      if (!current()) return;
      this.setState("scanning", `scanning on ${loaded.backend}…`);
      const { report } = await this.client.scan(options, ({ stage, done, total }) => {
        if (current()) this.$(".status").textContent = `${stage}: ${done}/${total}`;
      });
      if (!current()) return;
      this.report = report;
      this.render(report);
      this.setState("done", "");
      this.dispatchEvent(new CustomEvent("bdaudit-report", { detail: report, bubbles: true, composed: true }));
    } catch (e) {
      if (!current()) return;
      const message = e instanceof Error ? e.message : String(e);
      this.$(".error").textContent = message;
      this.$(".error").hidden = false;
      this.setState("error", "");
      this.dispatchEvent(new CustomEvent("bdaudit-error", { detail: message, bubbles: true, composed: true }));
    }
  }

  render(report) {
    const level = this.$(".level");
    level.textContent = report.verdict.level;
    level.className = `level ${report.verdict.level}`;
    this.$(".summary").textContent = report.verdict.summary;
    const top = report.candidates[0];
    const seconds = report.seconds != null ? `, ${report.seconds.toFixed(1)} s` : "";
    const strongest = top ? `; strongest candidate ${triggerText(top.trigger)} (ASR ${(100 * top.shift.asr).toFixed(0)}%)` : "";
    this.$(".meta").textContent = `${report.probe_texts.length} probe texts on ${report.backend}${seconds}${strongest}`;
    this.$(".meta").title = report.backend_reason ?? "";
    this.$(".result").hidden = false;
  }
}

// `checkSize(bytes)`, when given, sees the Content-Length (if the server sends one) before the
// body is read; when it rejects, the download is cancelled.
async function fetchBytes(url, checkSize = null) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`fetching ${url}: HTTP ${response.status} ${response.statusText}`);
  const length = Number(response.headers.get("content-length"));
  if (checkSize && length > 0) {
    try {
      await checkSize(length);
    } catch (e) {
      response.body?.cancel().catch(() => {});
      throw e;
    }
  }
  return response.arrayBuffer();
}

if (!customElements.get("bdaudit-scan")) customElements.define("bdaudit-scan", BdauditScanElement);
