// Times a full scan of one checkpoint on the scan page (www/index.html) in headless chromium,
// on WebGPU and on the CPU fallback, and natively with `bdaudit scan`; prints a markdown table.
// scripts/bench-web builds what it needs and runs this; see docs/benchmarks.md.
//
//   node bench.mjs --model DIR --native BIN [--backends native,cpu,webgpu] [--timeout-min 90]
//
// Each browser run is what a visitor does with default options: a fresh page
// (index.html?backend=cpu|webgpu), the three files in the file inputs, Scan. Its time runs
// from the click to the verdict on the page (reading the files, loading the model on the
// backend, the scan: attention variance over the 200 built-in probe texts and the trigger
// shift of every candidate). The native run gets the page's defaults as flags, so both scan
// the same texts with the same settings; the verdicts must agree (exit 1 otherwise).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CHROMIUM, adapterInfo, startBrowser } from "./harness.mjs";

const { values: args } = parseArgs({
  options: {
    model: { type: "string" },
    native: { type: "string" },
    backends: { type: "string", default: "native,cpu,webgpu" },
    "timeout-min": { type: "string", default: "90" },
  },
});
const FILES = ["model.safetensors", "config.json", "tokenizer.json"];
if (!args.model || FILES.some((f) => !existsSync(join(args.model, f)))) {
  console.error(`--model must be a checkpoint directory with ${FILES.join(", ")}`);
  process.exit(1);
}
const backends = args.backends.split(",").map((b) => b.trim());
const unknown = backends.filter((b) => !["native", "cpu", "webgpu"].includes(b));
if (unknown.length) {
  console.error(`--backends: unknown ${unknown.join(", ")} (use native, cpu, webgpu)`);
  process.exit(1);
}
if (backends.includes("native") && !(args.native && existsSync(args.native))) {
  console.error("--native must be the bdaudit binary (cargo build --release -p bdaudit)");
  process.exit(1);
}
const timeoutMs = Number(args["timeout-min"]) * 60_000;
const log = (line) => console.error(`bench-web: ${line}`);
const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");
const load1 = () => loadavg()[0].toFixed(1);
const topTrigger = (report) => {
  const c = report.candidates[0];
  if (!c) return "—";
  const t = c.trigger.kind === "badnets" ? c.trigger.words.join(" | ") : `"${c.trigger.sentence}"`;
  return `${t} (ASR ${(100 * c.shift.asr).toFixed(1)}%)`;
};

// No flags: `bdaudit scan` and the page share their defaults (core ScanConfig, SCAN_MAX_LEN),
// so the same 200 probe texts, trigger positions and candidates.
function runNative() {
  const argv = ["scan", "--model", args.model, "--json"];
  log(`${args.native} ${argv.join(" ")}`);
  const loadStart = load1();
  const t0 = performance.now();
  const run = spawnSync(args.native, argv, { encoding: "utf8", maxBuffer: 256 << 20 });
  const seconds = (performance.now() - t0) / 1000;
  // Exit code 2 means "suspicious", not a failure.
  if (run.status !== 0 && run.status !== 2) throw new Error(`bdaudit scan failed (${run.status}): ${run.stderr}`);
  const report = JSON.parse(run.stdout.trim().split("\n").pop());
  return { name: "native `bdaudit scan`", backend: report.backend, reason: "", seconds, report, load: `${loadStart} → ${load1()}` };
}

// One scan on a fresh page, driven like a visitor would. Resolves to a row, or throws.
async function runPage(browser, backend) {
  const page = await browser.newPage(`index.html?backend=${backend}`);
  // A scan on a software adapter runs for most of an hour: say what went away, and when.
  let crashed = false;
  page.on("crash", () => {
    crashed = true;
    log(`[${backend}] the page crashed`);
  });
  page.on("close", () => log(`[${backend}] the page closed`));
  page.on("worker", (w) => w.on("close", () => log(`[${backend}] the scan worker ended`)));
  try {
    const chosen = await page.inputValue("#backend-choice");
    if (chosen !== backend) throw new Error(`?backend=${backend} left the page on ${chosen}`);
    for (const [input, file] of [["#model", FILES[0]], ["#config", FILES[1]], ["#tokenizer", FILES[2]]]) {
      await page.setInputFiles(input, join(args.model, file));
    }
    const loadStart = load1();
    const t0 = performance.now();
    const ticker = setInterval(async () => {
      const progress = await page.textContent("#progress").catch(() => "");
      log(`[${backend}] ${Math.round((performance.now() - t0) / 1000)} s, load ${load1()}: ${progress}`);
    }, 60_000);
    try {
      await page.click("#scan");
      await page.waitForFunction(
        () => document.getElementById("verdict").dataset.level || document.getElementById("error").textContent,
        null,
        { timeout: timeoutMs, polling: 500 },
      );
    } catch (e) {
      const recent = browser.consoleLines.slice(-10).join("\n  ");
      throw new Error(`${crashed ? "the page crashed; " : ""}${e.message}\n  last console lines:\n  ${recent}`);
    } finally {
      clearInterval(ticker);
    }
    const seconds = (performance.now() - t0) / 1000;
    const error = await page.textContent("#error");
    if (error) throw new Error(`the page showed an error: ${error}`);
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
    const report = JSON.parse(readFileSync(await download.path(), "utf8"));
    return { name: `browser, ?backend=${backend}`, backend: report.backend, reason: report.backend_reason ?? "", seconds, report, load: `${loadStart} → ${load1()}` };
  } finally {
    await page.close();
  }
}

// What the page's default ("auto") picks here: load only (a few seconds), through the page's
// own BdauditClient and the files in its inputs.
async function autoChoice(browser) {
  const page = await browser.newPage("index.html");
  try {
    for (const [input, file] of [["#model", FILES[0]], ["#config", FILES[1]], ["#tokenizer", FILES[2]]]) {
      await page.setInputFiles(input, join(args.model, file));
    }
    return await page.evaluate(async () => {
      const { BdauditClient } = await import("./bdaudit-scan.js");
      const client = new BdauditClient();
      const bytes = (id) => document.getElementById(id).files[0].arrayBuffer();
      try {
        const files = { model: await bytes("model"), config: await bytes("config"), tokenizer: await bytes("tokenizer") };
        const { backend, backendReason } = await client.load(files, { backend: "auto" });
        return { backend, backendReason };
      } finally {
        client.terminate();
      }
    });
  } finally {
    await page.close();
  }
}

const loadBefore = load();
const rows = [];
const failures = [];
if (backends.includes("native")) rows.push(runNative());

const browser = await startBrowser();
browser.context.on("close", () => log("the browser closed"));
let adapter, auto;
try {
  const page = await browser.newPage("index.html");
  adapter = await adapterInfo(page);
  await page.close();
  log(`WebGPU adapter: ${JSON.stringify(adapter)}`);
  auto = await autoChoice(browser);
  log(`the page's default (auto) picks ${auto.backend}: ${auto.backendReason}`);
  for (const backend of ["cpu", "webgpu"].filter((b) => backends.includes(b))) {
    log(`scanning on the page with ?backend=${backend} (timeout ${args["timeout-min"]} min)`);
    try {
      rows.push(await runPage(browser, backend));
    } catch (e) {
      failures.push(`?backend=${backend}: ${e.message}`);
    }
  }
} finally {
  await browser.close();
}
const loadAfter = load();

const adapterText = adapter.none ?? [adapter.vendor, adapter.architecture, adapter.description].filter((s) => s).join(" / ") + (adapter.isFallbackAdapter ? ", isFallbackAdapter" : "");
const cpu = cpus();
// The user agent says only "Chrome/156.0.0.0": ask the binary for its full version.
const chromium = spawnSync(CHROMIUM, ["--version"], { encoding: "utf8" }).stdout.trim().split("\n").pop();
console.log(`Machine: ${cpu[0]?.model ?? "?"}, ${cpu.length} vCPUs, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; ${chromium}; node ${process.version}`);
console.log(`Load average (1/5/15 min): ${loadBefore} before, ${loadAfter} after`);
console.log(`WebGPU adapter: ${adapterText}`);
console.log(`The page's default backend (auto) picks ${auto.backend}: ${auto.backendReason}`);
console.log(`Checkpoint: ${args.model}\n`);
console.log("| run | backend | seconds | report seconds | verdict | top trigger | load (1 min) |");
console.log("|---|---|---|---|---|---|---|");
for (const r of rows) {
  const reportSeconds = r.report.seconds != null ? r.report.seconds.toFixed(1) : "—";
  console.log(`| ${r.name} | ${r.backend} | ${r.seconds.toFixed(1)} | ${reportSeconds} | ${r.report.verdict.level} | ${topTrigger(r.report)} | ${r.load} |`);
}
console.log(
  "\nseconds: browser, from the click on Scan to the verdict on the page (reading the files, loading the model, the scan);" +
    " native, the whole `bdaudit scan` process. report seconds: the report's own `seconds`" +
    " (browser: the worker's scan call; native: loading and scanning). load: the machine's" +
    " 1-minute load average when the run started and ended (2 vCPUs: above ~1.5 other work" +
    " competes for them).",
);
for (const r of rows) {
  console.log(`\n${r.name} (${r.backend}${r.reason ? `: ${r.reason}` : ""}):\n  ${r.report.verdict.summary}`);
}

// The same texts and settings must give the same verdict on every backend.
const disagreements = [...failures];
const [first, ...rest] = rows;
for (const r of rest) {
  if (JSON.stringify(r.report.probe_texts) !== JSON.stringify(first.report.probe_texts)) disagreements.push(`${r.name} scanned other probe texts than ${first.name}`);
  if (r.report.verdict.level !== first.report.verdict.level) disagreements.push(`${r.name} says ${r.report.verdict.level}, ${first.name} ${first.report.verdict.level}`);
  if (JSON.stringify(r.report.verdict.triggers) !== JSON.stringify(first.report.verdict.triggers)) disagreements.push(`${r.name} names ${r.report.verdict.triggers}, ${first.name} ${first.report.verdict.triggers}`);
}
if (browser.offOrigin.length) disagreements.push(`requests left the page's origin: ${browser.offOrigin.join(", ")}`);
if (disagreements.length) {
  console.log(`\nFAILED:\n- ${disagreements.join("\n- ")}`);
  process.exit(1);
}
console.log(`\nAll ${rows.length} runs agree: ${first?.report.verdict.level}, ${first?.report.verdict.triggers.join(", ") || "no trigger"}.`);
