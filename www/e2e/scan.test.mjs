// End-to-end test of the browser page (www/index.html) and <bdaudit-scan> (www/widget-demo.html)
// in headless Debian chromium, driven by playwright-core. scripts/test-web builds www/pkg and
// the tiny checkpoints (make-fixtures.mjs) first, then runs `node --test` on this file.
//
// The test serves www/ itself (a small node http server on 127.0.0.1) so the page, the wasm,
// the worker and the fixtures share one origin, and fails if any request leaves that origin.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync, statSync, mkdirSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const WWW = join(HERE, "..");
const FIXTURES = process.env.BDAUDIT_WEB_FIXTURES || join(HERE, "fixtures-tmp");
const FIXTURES_URL = relative(WWW, FIXTURES).split(sep).join("/"); // e.g. e2e/fixtures-tmp
const OUT = join(HERE, "out");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SCAN_TIMEOUT = Number(process.env.BDAUDIT_WEB_TIMEOUT_MS || 240_000);

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".tsv": "text/plain; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".css": "text/css",
  ".png": "image/png",
};

let server, origin, context, userDataDir;
const offOrigin = [];
const consoleLines = [];
const backends = {};

function serve() {
  return new Promise((resolve) => {
    const s = createServer((req, res) => {
      const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^([/\\])+/, "");
      const file = join(WWW, path.endsWith("/") || path === "" ? join(path, "index.html") : path);
      if (!file.startsWith(WWW) || !existsSync(file) || !statSync(file).isFile()) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found");
        return;
      }
      res.writeHead(200, { "content-type": TYPES[extname(file)] || "application/octet-stream", "cache-control": "no-store" });
      res.end(readFileSync(file));
    });
    s.listen(0, "127.0.0.1", () => resolve(s));
  });
}

before(async () => {
  for (const f of ["pkg/bdaudit_web.js", "pkg/bdaudit_web_bg.wasm"]) {
    assert.ok(existsSync(join(WWW, f)), `www/${f} is missing: run scripts/build-web`);
  }
  for (const d of ["victim", "clean", "corrupt"]) {
    assert.ok(existsSync(join(FIXTURES, d, "model.safetensors")), `${FIXTURES}/${d} is missing: run scripts/test-web (make-fixtures.mjs)`);
  }
  server = await serve();
  origin = `http://127.0.0.1:${server.address().port}`;
  userDataDir = mkdtempSync(join(tmpdir(), "bdaudit-chromium-"));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--enable-unsafe-webgpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1200, height: 900 },
  });
  // Every request the browser makes (pages and their workers) must stay on the origin.
  context.on("request", (req) => {
    const url = req.url();
    if (url.startsWith("data:") || url.startsWith("blob:")) return;
    if (new URL(url).origin !== origin) offOrigin.push(url);
  });
});

after(async () => {
  await context?.close();
  server?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  console.log(`# backends: ${JSON.stringify(backends)}`);
});

async function newPage(path) {
  const page = await context.newPage();
  page.on("request", (req) => {
    const url = req.url();
    if (!url.startsWith("data:") && !url.startsWith("blob:") && new URL(url).origin !== origin) offOrigin.push(url);
  });
  page.on("console", (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.message}`));
  await page.goto(`${origin}/${path}`);
  return page;
}

const fixture = (...p) => join(FIXTURES, ...p);
const probeTsv = () => readFileSync(fixture("probe.tsv"), "utf8");

// Picks the three files, fills the probe texts, clicks Scan; resolves to the verdict level or
// the error message, whichever the page shows first.
async function scanOnPage(page, dir, { gpu = true, probes = probeTsv() } = {}) {
  await page.setInputFiles("#model", fixture(dir, "model.safetensors"));
  await page.setInputFiles("#config", fixture(dir, "config.json"));
  await page.setInputFiles("#tokenizer", fixture(dir, "tokenizer.json"));
  await page.setChecked("#gpu", gpu);
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
    error: document.getElementById("error").textContent,
    progress: document.getElementById("progress").textContent,
    firstCandidate: document.querySelector("#candidate-table tbody tr td")?.textContent ?? null,
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
  const adapter = await page.evaluate(async () => {
    if (!navigator.gpu) return "no navigator.gpu";
    const a = await navigator.gpu.requestAdapter();
    if (!a) return "no adapter";
    const info = a.info || {};
    return `${info.vendor || "?"} ${info.architecture || ""} ${info.description || ""} fallback=${a.isFallbackAdapter ?? info.isFallbackAdapter}`;
  });
  console.log(`# WebGPU adapter on the page: ${adapter}`);

  const r = await scanOnPage(page, "victim");
  console.log(`# victim, WebGPU preferred: ${r.level} on ${r.backend} in ${r.ms} ms: ${r.summary}${r.error}`);
  backends.victimPreferGpu = r.backend;
  assert.equal(r.error, "", `the page showed an error: ${r.error}\n${consoleLines.join("\n")}`);
  assert.equal(r.level, "suspicious", r.summary);
  assert.match(r.summary, /\bcf\b/);
  assert.equal(r.firstCandidate, "cf");
  assert.ok(["webgpu", "cpu"].includes(r.backend), r.backend);
  assert.equal(r.heatmapCells, 2 * 4, "2 layers × 4 heads");
  assert.equal(r.driftCells, 2 * 4);
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
  assert.deepEqual(saved.attention.heads, [4, 4]);

  mkdirSync(OUT, { recursive: true });
  const shot = join(OUT, "scan.png");
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`# screenshot: ${shot}`);

  // The same scan on the CPU gives the same verdict.
  const cpu = await scanOnPage(page, "victim", { gpu: false });
  console.log(`# victim, CPU only: ${cpu.level} on ${cpu.backend} in ${cpu.ms} ms`);
  backends.victimCpu = cpu.backend;
  assert.equal(cpu.backend, "cpu");
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
  const r = await scanOnPage(page, "victim", { gpu: false });
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

test("no request left the page's origin", () => {
  assert.deepEqual(offOrigin, [], `requests outside ${origin}: ${offOrigin.join(", ")}`);
});
