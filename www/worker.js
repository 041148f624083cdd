// The scan runs here, off the page's thread, so the page stays responsive. Module worker:
//   new Worker(new URL("./worker.js", import.meta.url), { type: "module" })
//
// Requests (postMessage), each with a numeric `id`:
//   { id, type: "load", model, config, tokenizer, backend, numLabels, base }
//       model/config/tokenizer: ArrayBuffer (or Uint8Array); backend: "auto" (default: WebGPU
//       on a hardware adapter, else the CPU), "webgpu" (even a software adapter) or "cpu";
//       base: null or { model, config, tokenizer } of the clean checkpoint the model was
//       fine-tuned from.
//       → { id, ok: true, backend, backendReason, adapter, labels: [...], loadReport: {...} }
//   { id, type: "scan", options }   options: { probeTexts, triggers, sentences, seed }
//       → { id, progress: { stage, done, total } } … then { id, ok: true, report, seconds }
//   { id, type: "classify", texts } → { id, ok: true, predictions }
//   The three probes alone (options as for scan, progress as for scan):
//   { id, type: "attentionVariance", options } → { id, ok: true, variance: { layers, heads, scores } }
//   { id, type: "triggerShift", options }  options: { trigger | sentence, probeTexts, seed }
//       → { id, ok: true, shift: { target, asr, pacc, confusion, … } }
//   { id, type: "tokenScores", top }  (needs a base, given at load) → { id, ok: true, tokens: [{ id, token, score }] }
//   { id, type: "checkSize", bytes } → { id, ok: true } when a model.safetensors of that size
//       fits the memory budget (asked before the file is read)
//   { id, type: "panicForTests" } → always a crash (the end-to-end test of the restart)
// A failure answers { id, ok: false, error: message } (the core's message), with crashed: true
// when the wasm module trapped (a panic: the message is the panic's) and the worker is spent.
import init, { Auditor, checkModelSize, panicForTests } from "./pkg/bdaudit_web.js";

const ready = init();
let auditor = null;
let base = null; // { files, backend, numLabels }: loaded anew for every scan (scan consumes it)

const bytes = (b) => (b instanceof Uint8Array ? b : new Uint8Array(b));

async function loadAuditor(files, backend, numLabels) {
  await ready;
  return Auditor.load(bytes(files.model), bytes(files.config), bytes(files.tokenizer), backend, numLabels ?? undefined);
}

const handlers = {
  async load(msg) {
    if (auditor) auditor.free();
    auditor = null;
    base = null;
    const backend = msg.backend ?? "auto";
    auditor = await loadAuditor(msg, backend, msg.numLabels);
    if (msg.base) {
      // A base is often the bare pre-trained encoder: give it the model's number of classes
      // (its new head is never used; token scores compare embeddings only).
      const numLabels = msg.numLabels ?? JSON.parse(auditor.labels()).length;
      // Load once now so a malformed base fails here, with the checkpoint, not mid-scan.
      const probe = await loadAuditor(msg.base, backend, numLabels);
      const baseBackend = probe.backend();
      probe.free();
      if (baseBackend !== auditor.backend()) {
        throw new Error(`the base checkpoint runs on ${baseBackend} but the model on ${auditor.backend()}`);
      }
      base = { files: msg.base, backend, numLabels };
    }
    return {
      backend: auditor.backend(),
      backendReason: auditor.backendReason(),
      adapter: JSON.parse(auditor.adapter()),
      labels: JSON.parse(auditor.labels()),
      loadReport: JSON.parse(auditor.loadReport()),
      hasBase: !!base,
    };
  },

  async scan(msg, reply) {
    if (!auditor) throw new Error("load a checkpoint first");
    const t0 = performance.now();
    const b = base ? await loadAuditor(base.files, base.backend, base.numLabels) : null;
    const report = JSON.parse(await auditor.scan(JSON.stringify(msg.options ?? {}), b, progressTo(reply)));
    const seconds = (performance.now() - t0) / 1000;
    if (report.seconds == null) report.seconds = seconds;
    return { report };
  },

  async classify(msg) {
    if (!auditor) throw new Error("load a checkpoint first");
    return { predictions: JSON.parse(await auditor.classify(JSON.stringify(msg.texts))) };
  },

  async attentionVariance(msg, reply) {
    if (!auditor) throw new Error("load a checkpoint first");
    return { variance: JSON.parse(await auditor.attentionVariance(JSON.stringify(msg.options ?? {}), progressTo(reply))) };
  },

  async triggerShift(msg, reply) {
    if (!auditor) throw new Error("load a checkpoint first");
    return { shift: JSON.parse(await auditor.triggerShift(JSON.stringify(msg.options ?? {}), progressTo(reply))) };
  },

  async tokenScores(msg) {
    if (!auditor) throw new Error("load a checkpoint first");
    if (!base) throw new Error("token scores need the base checkpoint the model was fine-tuned from: load it with the model");
    const b = await loadAuditor(base.files, base.backend, base.numLabels);
    return { tokens: JSON.parse(await auditor.tokenScores(b, msg.top ?? undefined)) };
  },

  async checkSize(msg) {
    await ready;
    checkModelSize(msg.bytes);
    return {};
  },

  async panicForTests() {
    await ready;
    panicForTests();
    return {};
  },
};

// Progress callback for the wasm calls, throttled to one message per 50 ms plus every stage's
// start and end.
function progressTo(reply) {
  let last = 0;
  return (stage, done, total) => {
    const now = performance.now();
    if (done === 0 || done === total || now - last > 50) {
      last = now;
      reply({ progress: { stage, done, total } });
    }
  };
}

// A failed request's answer. A panic in the wasm is a trap (a RuntimeError) that leaves the
// module unusable: `crashed` tells the client to start a fresh worker, and the message is the
// panic's, which the panic hook (web/src/lib.rs) left in self.bdauditPanic.
function failure(e) {
  const crashed = e instanceof WebAssembly.RuntimeError;
  const panic = self.bdauditPanic;
  delete self.bdauditPanic;
  const message = e instanceof Error ? e.message : String(e);
  return { ok: false, crashed, error: crashed ? `bdaudit crashed: ${panic ?? message}` : message };
}

// The reply of the request in progress. A trap inside an async wasm call happens in
// wasm-bindgen's task queue, not under the handler's await: it arrives here as an uncaught
// error, and its request would otherwise never be answered.
let current = null;
self.addEventListener("error", (event) => {
  if (!current) return; // nothing pending: the client's worker.onerror reports it
  event.preventDefault();
  current(failure(event.error ?? new Error(event.message)));
  current = null;
});

// One request at a time, in order: the wasm module is single-threaded anyway.
let queue = Promise.resolve();
self.onmessage = (event) => {
  const msg = event.data;
  const reply = (body) => self.postMessage({ id: msg.id, ...body });
  queue = queue.then(async () => {
    current = reply;
    try {
      const handler = handlers[msg.type];
      if (!handler) throw new Error(`unknown request ${msg.type}`);
      reply({ ok: true, ...(await handler(msg, reply)) });
    } catch (e) {
      reply(failure(e));
    } finally {
      current = null;
    }
  });
};
