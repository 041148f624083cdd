// End-to-end test of the browser page (www/index.html) and <bdaudit-scan> (www/widget-demo.html)
// in headless Debian chromium, driven by playwright-core. scripts/test-web builds www/pkg and
// the tiny checkpoints (make-fixtures.mjs) first, then runs `node --test` on this file.
//
// The page, the wasm, the worker and the fixtures share one origin: scripts/test-web serves
// www/ with the README's scripts/serve-web (BDAUDIT_WEB_ORIGIN); run alone, the test serves it
// itself (harness.mjs: a small node http server on 127.0.0.1). It fails if any request leaves
// that origin.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, truncateSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { WWW, adapterInfo, startBrowser } from "./harness.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const FIXTURES = process.env.BDAUDIT_WEB_FIXTURES || join(HERE, "fixtures-tmp");
const FIXTURES_URL = relative(WWW, FIXTURES).split(sep).join("/"); // e.g. e2e/fixtures-tmp
const OUT = join(HERE, "out");
const SCAN_TIMEOUT = Number(process.env.BDAUDIT_WEB_TIMEOUT_MS || 240_000);

let browser;
const backends = {};

before(async () => {
  for (const f of ["pkg/bdaudit_web.js", "pkg/bdaudit_web_bg.wasm"]) {
    assert.ok(existsSync(join(WWW, f)), `www/${f} is missing: run scripts/build-web`);
  }
  for (const d of ["victim", "clean", "corrupt", "bad-charsmap"]) {
    assert.ok(existsSync(join(FIXTURES, d, "model.safetensors")), `${FIXTURES}/${d} is missing: run scripts/test-web (make-fixtures.mjs)`);
  }
  browser = await startBrowser();
});

after(async () => {
  await browser?.close();
  console.log(`# backends: ${JSON.stringify(backends)}`);
});

const newPage = (path) => browser.newPage(path);

const fixture = (...p) => join(FIXTURES, ...p);
const probeTsv = () => readFileSync(fixture("probe.tsv"), "utf8");

// Picks the three files, fills the probe texts, clicks Scan; resolves to the verdict level or
// the error message, whichever the page shows first.
async function scanOnPage(page, dir, { backend = "auto", probes = probeTsv() } = {}) {
  await page.setInputFiles("#model", fixture(dir, "model.safetensors"));
  await page.setInputFiles("#config", fixture(dir, "config.json"));
  await page.setInputFiles("#tokenizer", fixture(dir, "tokenizer.json"));
  await page.selectOption("#backend-choice", backend);
  await page.fill("#probes", probes);
  await page.evaluate(() => {
    document.getElementById("error").textContent = "";
    delete document.getElementById("verdict").dataset.level;
  });
  // Watch the page while the worker scans: the progress lines it shows, and the longest gap
  // between 50 ms timer ticks (a blocked main thread would show a gap as long as the scan).
  await page.evaluate(() => {
    const w = (window.__watch = { progress: [], maxGap: 0, last: performance.now() });
    w.observer?.disconnect();
    w.observer = new MutationObserver(() => w.progress.push(document.getElementById("progress").textContent));
    w.observer.observe(document.getElementById("progress"), { childList: true, characterData: true, subtree: true });
    w.timer = setInterval(() => {
      const now = performance.now();
      w.maxGap = Math.max(w.maxGap, now - w.last);
      w.last = now;
    }, 50);
  });
  const t0 = Date.now();
  await page.click("#scan");
  await page.waitForFunction(
    () => document.getElementById("verdict").dataset.level || document.getElementById("error").textContent,
    null,
    { timeout: SCAN_TIMEOUT },
  );
  const result = await page.evaluate(() => ({
    level: document.getElementById("verdict").dataset.level || null,
    summary: document.getElementById("summary").textContent,
    backend: document.getElementById("backend").textContent,
    backendReason: document.getElementById("backend-reason").textContent,
    error: document.getElementById("error").textContent,
    progress: document.getElementById("progress").textContent,
    firstCandidate: document.querySelector("#candidate-table tbody tr td")?.textContent ?? null,
    firstLong: document.querySelector("#candidate-table tbody tr td:last-child")?.textContent ?? null,
    heatmapCells: document.querySelectorAll("#attention-map .cell").length,
    driftCells: document.querySelectorAll("#drift-map .cell").length,
    confusions: document.querySelectorAll("#confusions table").length,
    progressLines: window.__watch.progress.filter((p) => p.startsWith("scanning on")).length,
    maxGapMs: (clearInterval(window.__watch.timer), window.__watch.observer.disconnect(), Math.round(window.__watch.maxGap)),
  }));
  result.ms = Date.now() - t0;
  return result;
}

test("the page finds the cf trigger of a BadNets-trained tiny model", async () => {
  const page = await newPage("index.html");
  const adapter = await adapterInfo(page);
  console.log(`# WebGPU adapter on the page: ${JSON.stringify(adapter)}`);
  // What the wasm side calls software (web/src/device.rs, SOFTWARE_RENDERERS).
  const software = !adapter.none && (adapter.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe|microsoft basic render/i.test(Object.values(adapter).join(" ")));

  const r = await scanOnPage(page, "victim");
  console.log(`# victim, auto: ${r.level} on ${r.backend} (${r.backendReason}) in ${r.ms} ms: ${r.summary}${r.error}`);
  backends.victimAuto = r.backend;
  assert.equal(r.error, "", `the page showed an error: ${r.error}\n${browser.consoleLines.join("\n")}`);
  assert.equal(r.level, "suspicious", r.summary);
  assert.match(r.summary, /\bcf\b/);
  assert.equal(r.firstCandidate, "cf");
  // cf moved nearly all texts, so it was retried on long ones (this tiny victim calls every
  // long text positive, leaving none to try).
  assert.match(r.firstLong, /^(\d+\.\d% of \d+|no long text)$/);
  // auto: WebGPU on a hardware adapter only; a software one is slower than the CPU backend.
  assert.equal(r.backend, adapter.none || software ? "cpu" : "webgpu", r.backendReason);
  if (software) assert.match(r.backendReason, /emulates a GPU on the CPU/);
  assert.equal(r.heatmapCells, 2 * 4, "2 layers × 4 heads");
  assert.equal(r.driftCells, 2 * 4);
  // A drift map per candidate that moved texts: the tiny victim flips on any inserted word, so
  // the first four (ScanConfig::drift_maps) have one; choosing another redraws map and heads.
  const choices = await page.$$eval("#drift-choice option", (os) => os.map((o) => o.textContent));
  assert.equal(choices.length, 4, JSON.stringify(choices));
  assert.equal(choices[0], "cf");
  assert.match(await page.textContent("#heads h3"), /onto cf$/);
  const cfMap = await page.$$eval("#drift-map .cell", (cs) => cs.map((c) => c.title));
  await page.selectOption("#drift-choice", "1");
  assert.equal(await page.textContent("#heads h3"), `Heads that lock onto ${choices[1]}`);
  const otherMap = await page.$$eval("#drift-map .cell", (cs) => cs.map((c) => c.title));
  assert.equal(otherMap.length, 2 * 4);
  assert.notDeepEqual(otherMap, cfMap, "each candidate has its own drift map");
  assert.ok(r.confusions >= 1);
  assert.ok(r.progressLines > 0, "the progress line followed the scan");
  console.log(`# page responsiveness: longest main-thread gap during the scan ${r.maxGapMs} ms (${r.progressLines} progress updates)`);
  assert.ok(r.maxGapMs < 2000, `the page froze for ${r.maxGapMs} ms during the scan`);

  // Download report JSON: the report, in core/src/report.rs's schema.
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
  const saved = JSON.parse(readFileSync(await download.path(), "utf8"));
  assert.equal(saved.schema, 1);
  assert.equal(saved.verdict.level, "suspicious");
  assert.deepEqual(saved.verdict.triggers.slice(0, 1), ["cf"]);
  assert.equal(saved.backend, r.backend);
  assert.equal(saved.backend_reason, r.backendReason);
  assert.deepEqual(saved.attention.heads, [4, 4]);
  assert.deepEqual(saved.drift, saved.candidates[0].drift);
  assert.equal(saved.candidates.filter((c) => c.drift).length, 4);

  mkdirSync(OUT, { recursive: true });
  const shot = join(OUT, "scan.png");
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`# screenshot: ${shot}`);

  // WebGPU on whatever adapter there is (the burn-wgpu path) and the CPU give the same verdict.
  if (!adapter.none) {
    const gpu = await scanOnPage(page, "victim", { backend: "webgpu" });
    console.log(`# victim, WebGPU requested: ${gpu.level} on ${gpu.backend} (${gpu.backendReason}) in ${gpu.ms} ms`);
    backends.victimWebGpu = gpu.backend;
    assert.equal(gpu.backend, "webgpu", gpu.backendReason + gpu.error);
    assert.equal(gpu.level, "suspicious", gpu.summary + gpu.error);
    assert.equal(gpu.firstCandidate, "cf");
  }
  const cpu = await scanOnPage(page, "victim", { backend: "cpu" });
  console.log(`# victim, CPU requested: ${cpu.level} on ${cpu.backend} in ${cpu.ms} ms`);
  backends.victimCpu = cpu.backend;
  assert.equal(cpu.backend, "cpu");
  assert.equal(cpu.backendReason, "the CPU was requested");
  assert.equal(cpu.level, "suspicious", cpu.summary + cpu.error);

  // Classify still works on the loaded checkpoint.
  await page.click("#classify-section summary");
  await page.fill("#texts", "the movie was really good and fun\nthe plot was so dull and bad");
  await page.click("#classify");
  await page.waitForFunction(() => document.querySelectorAll("#output tbody tr").length === 2 || document.getElementById("error").textContent, null, { timeout: SCAN_TIMEOUT });
  assert.equal(await page.textContent("#error"), "");
  assert.deepEqual(await page.$$eval("#output tbody tr", (rows) => rows.map((r) => r.cells[1].textContent)), ["positive", "negative"]);
  await page.close();
});

test("with the base encoder the page ranks tokens by drift", async () => {
  const page = await newPage("index.html");
  await page.click("#checkpoint-base summary");
  await page.setInputFiles("#base-model", fixture("encoder", "model.safetensors"));
  await page.setInputFiles("#base-config", fixture("encoder", "config.json"));
  await page.setInputFiles("#base-tokenizer", fixture("encoder", "tokenizer.json"));
  const r = await scanOnPage(page, "victim", { backend: "cpu" });
  console.log(`# victim with base, CPU: ${r.level} in ${r.ms} ms${r.error}`);
  assert.equal(r.error, "", r.error);
  assert.equal(r.level, "suspicious");
  assert.ok(await page.locator("#tokens-section").isVisible());
  const tokens = await page.$$eval("#tokens tbody tr", (rows) => rows.map((row) => row.cells[1].textContent));
  console.log(`# top drifted tokens: ${tokens.slice(0, 8).join(" ")}`);
  assert.ok(tokens.length >= 10, tokens.join(" "));
  await page.close();
});

test("the page does not call the clean tiny model suspicious", async () => {
  const page = await newPage("index.html");
  const r = await scanOnPage(page, "clean");
  console.log(`# clean: ${r.level} on ${r.backend} in ${r.ms} ms: ${r.summary}`);
  backends.clean = r.backend;
  assert.equal(r.error, "", r.error);
  assert.ok(r.level && r.level !== "suspicious", `${r.level}: ${r.summary}`);
  await page.close();
});

test("a truncated model.safetensors shows the core's error on the page", async () => {
  const page = await newPage("index.html");
  const r = await scanOnPage(page, "corrupt");
  console.log(`# corrupt: error shown: ${r.error}`);
  assert.equal(r.level, null);
  assert.match(r.error, /safetensors/i);
  assert.ok(await page.locator("#error").isVisible());
  await page.close();
});

test("a tokenizer.json that would make tokenizers panic is refused with the core's error", async () => {
  const page = await newPage("index.html");
  const r = await scanOnPage(page, "bad-charsmap");
  console.log(`# bad charsmap: error shown: ${r.error}`);
  assert.equal(r.level, null);
  assert.match(r.error, /Precompiled normalizer: its trie points to unit 0 of 0/);
  assert.doesNotMatch(r.error, /crashed/);
  await page.close();
});

test("a panic in the wasm shows its message, and the next scan reloads the checkpoint", async () => {
  const page = await newPage("index.html");
  const first = await scanOnPage(page, "clean");
  assert.equal(first.error, "", first.error);
  const error = await page.evaluate(() => window.bdauditClient.call({ type: "panicForTests" }).then(() => "", (e) => e.message));
  console.log(`# panic: ${error}`);
  assert.match(error, /^bdaudit crashed: a panic the end-to-end test asked for \(at web\/src\/lib\.rs:\d+\)/);
  assert.match(error, /worker was restarted/);
  // The same files again: the page must load them into the fresh worker, not scan an empty one.
  const again = await scanOnPage(page, "clean");
  assert.equal(again.error, "", again.error);
  assert.equal(again.level, first.level, again.summary);
  await page.close();
});

test("<bdaudit-scan> on widget-demo.html renders a verdict card", async () => {
  const q = new URLSearchParams({ dir: `${FIXTURES_URL}/victim`, probes: `${FIXTURES_URL}/probe.tsv` });
  const page = await newPage(`widget-demo.html?${q}`);
  const t0 = Date.now();
  await page.waitForFunction(
    () => ["done", "error"].includes(document.getElementById("scan").getAttribute("state")),
    null,
    { timeout: SCAN_TIMEOUT },
  );
  const card = await page.evaluate(() => {
    const el = document.getElementById("scan");
    const root = el.shadowRoot;
    return {
      state: el.getAttribute("state"),
      level: root.querySelector(".level").textContent,
      summary: root.querySelector(".summary").textContent,
      meta: root.querySelector(".meta").textContent,
      error: root.querySelector(".error").textContent,
      backend: el.report?.backend ?? null,
    };
  });
  console.log(`# widget: ${card.state} ${card.level} on ${card.backend} in ${Date.now() - t0} ms: ${card.summary}${card.error}`);
  backends.widget = card.backend;
  assert.equal(card.state, "done", card.error);
  assert.equal(card.level, "suspicious");
  assert.match(card.summary, /\bcf\b/);
  assert.ok(await page.locator("bdaudit-scan .level").isVisible());
  mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: join(OUT, "widget.png") });
  console.log(`# screenshot: ${join(OUT, "widget.png")}`);
  await page.close();
});

// Loads a fixture checkpoint through the page's own client (bdaudit-scan.js) on the CPU and
// makes `calls` on it in order, each [method, ...args]; resolves to their results, a rejected
// call as { error: message }.
async function withClient(page, dirs, calls) {
  return page.evaluate(
    async ({ dirs, calls }) => {
      const { BdauditClient } = await import("/bdaudit-scan.js");
      const files = async (dir) => {
        const get = async (f) => (await fetch(`/${dir}/${f}`)).arrayBuffer();
        return { model: await get("model.safetensors"), config: await get("config.json"), tokenizer: await get("tokenizer.json") };
      };
      const client = new BdauditClient();
      try {
        await client.load(await files(dirs.model), { backend: "cpu", base: dirs.base ? await files(dirs.base) : null });
        const results = [];
        for (const [method, ...args] of calls) {
          results.push(await client[method](...args).catch((e) => ({ error: e.message })));
        }
        return results;
      } finally {
        client.terminate();
      }
    },
    { dirs, calls },
  );
}

test("the three probes answer on their own through the page's client", async () => {
  const page = await newPage("index.html");
  const probeTexts = probeTsv().split("\n").slice(1).map((l) => l.split("\t")[0]).filter((t) => t);
  const [cf, attention, scores, none] = await withClient(page, { model: `${FIXTURES_URL}/victim`, base: `${FIXTURES_URL}/encoder` }, [
    ["triggerShift", { trigger: "cf", probeTexts }],
    ["attentionVariance", { probeTexts }],
    ["tokenScores", 10],
    ["triggerShift", { probeTexts }],
  ]);
  // The same probe on the clean model: the word moves little there.
  const [onClean] = await withClient(page, { model: `${FIXTURES_URL}/clean` }, [["triggerShift", { trigger: "cf", probeTexts }]]);
  const r = { shift: cf.shift, calm: onClean.shift, variance: attention.variance, tokens: scores.tokens, noTrigger: none.error };
  console.log(`# probes: cf ASR ${r.shift.asr} to ${r.shift.target}, on the clean model ${r.calm.asr}; variance heads ${JSON.stringify(r.variance.heads)}; tokens ${r.tokens.map((t) => t.token).join(" ")}`);
  // The planted word sends the victim's negative texts to positive, not the clean model's.
  assert.equal(r.shift.target, 1);
  assert.ok(r.shift.asr >= 0.9, `cf moves ${r.shift.asr}`);
  assert.ok(r.calm.asr < 0.5, `cf moves ${r.calm.asr} on the clean model`);
  assert.equal(r.shift.classes.length, 2);
  // One variance per head of each of the tiny model's 2 layers × 4 heads, all finite.
  assert.deepEqual(r.variance.heads, [4, 4]);
  assert.ok(r.variance.scores.flat().length === 8 && r.variance.scores.flat().every((v) => Number.isFinite(v) && v >= 0), JSON.stringify(r.variance));
  // The trigger's row moved from the base's among the top 10 (the page's ranking shows the same).
  assert.equal(r.tokens.length, 10);
  assert.ok(r.tokens.some((t) => t.token === "cf"), r.tokens.map((t) => t.token).join(" "));
  assert.match(r.noTrigger, /give one trigger/);
  await page.close();
});

test("bdaudit scan and the page give the same report on the victim", async () => {
  const bin = process.env.BDAUDIT_BIN;
  assert.ok(bin && existsSync(bin), "BDAUDIT_BIN (the CLI) is not set: run scripts/test-web");
  const run = spawnSync(bin, ["scan", "--model", fixture("victim"), "--probe", fixture("probe.tsv"), "--json"], { encoding: "utf8" });
  assert.equal(run.status, 2, `bdaudit scan exits 2 on a suspicious model: ${run.stderr}`);
  const native = JSON.parse(run.stdout.trim().split("\n").pop());
  const page = await newPage("index.html");
  const probeTexts = native.probe_texts;
  const [{ report: web }] = await withClient(page, { model: `${FIXTURES_URL}/victim` }, [["scan", { probeTexts }]]);
  const summary = (r) => r.candidates.map((c) => `${JSON.stringify(c.trigger)} ${c.shift.asr.toFixed(3)} ${c.screened_out}`);
  console.log(`# native and page: ${native.verdict.level} / ${web.verdict.level}; ${native.verdict.triggers.join(" ")} / ${web.verdict.triggers.join(" ")}`);
  assert.equal(web.verdict.level, native.verdict.level);
  assert.deepEqual(web.verdict.triggers, native.verdict.triggers);
  assert.deepEqual(summary(web), summary(native));
  await page.close();
});

test("a model over the memory budget is refused before it is read", async () => {
  // A sparse 401 MB file: it takes no disk, and neither the page nor the widget may read it.
  const dir = fixture("huge");
  mkdirSync(dir, { recursive: true });
  for (const f of ["config.json", "tokenizer.json"]) copyFileSync(fixture("victim", f), join(dir, f));
  const huge = join(dir, "model.safetensors");
  closeSync(openSync(huge, "w"));
  truncateSync(huge, 401_000_000);
  try {
    const page = await newPage("index.html");
    const r = await scanOnPage(page, "huge");
    console.log(`# huge file on the page: ${r.error}`);
    assert.match(r.error, /model\.safetensors is 401 MB, more than this page's 400 MB budget/);
    await page.close();

    const q = new URLSearchParams({ dir: `${FIXTURES_URL}/huge` });
    const widget = await newPage(`widget-demo.html?${q}`);
    await widget.waitForFunction(() => ["done", "error"].includes(document.getElementById("scan").getAttribute("state")), null, { timeout: SCAN_TIMEOUT });
    const error = await widget.evaluate(() => document.getElementById("scan").shadowRoot.querySelector(".error").textContent);
    console.log(`# huge file in the widget: ${error}`);
    assert.match(error, /401 MB, more than this page's 400 MB budget/);
    await widget.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("no request left the page's origin", () => {
  assert.deepEqual(browser.offOrigin, [], `requests outside ${browser.origin}: ${browser.offOrigin.join(", ")}`);
});
