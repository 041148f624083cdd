// What the e2e test (scan.test.mjs) and the browser benchmark (bench.mjs) share: a static
// server for www/ on 127.0.0.1, headless Debian chromium with WebGPU enabled, and a watch on
// every request so that nothing may leave the page's origin.
import { createServer } from "node:http";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const WWW = join(dirname(fileURLToPath(import.meta.url)), "..");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

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

// WebGPU (`navigator.gpu`) only exists in a secure context: http://127.0.0.1 is one, `file:`
// is not. --enable-unsafe-webgpu is what gives headless chromium an adapter at all (on a
// machine without a GPU, SwiftShader's software fallback); the rest keeps it off the network.
const FLAGS = [
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Serves `root` (default www/) on 127.0.0.1; resolves to { server, origin }. */
export function serve(root = WWW) {
  return new Promise((resolve) => {
    const server = createServer((req, res) => {
      const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^([/\\])+/, "");
      const file = join(root, path.endsWith("/") || path === "" ? join(path, "index.html") : path);
      if (!file.startsWith(root) || !existsSync(file) || !statSync(file).isFile()) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found");
        return;
      }
      const body = readFileSync(file);
      res.writeHead(200, {
        "content-type": TYPES[extname(file)] || "application/octet-stream",
        "content-length": body.length,
        "cache-control": "no-store",
      });
      res.end(body);
    });
    server.listen(0, "127.0.0.1", () => resolve({ server, origin: `http://127.0.0.1:${server.address().port}` }));
  });
}

/**
 * Serves www/ (or uses the server already at BDAUDIT_WEB_ORIGIN: scripts/test-web starts the
 * README's scripts/serve-web and tests the page through it) and starts chromium with a fresh
 * profile. `offOrigin` collects every request (pages and their workers) that left the origin;
 * `newPage(path)` opens a page there, with its console in `consoleLines`; `close()` tears it
 * all down.
 */
export async function startBrowser() {
  const { server, origin } = process.env.BDAUDIT_WEB_ORIGIN
    ? { server: null, origin: process.env.BDAUDIT_WEB_ORIGIN.replace(/\/+$/, "") }
    : await serve();
  const userDataDir = mkdtempSync(join(tmpdir(), "bdaudit-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1200, height: 900 },
  });
  const offOrigin = [];
  const consoleLines = [];
  const watch = (req) => {
    const url = req.url();
    if (url.startsWith("data:") || url.startsWith("blob:")) return;
    if (new URL(url).origin !== origin) offOrigin.push(url);
  };
  context.on("request", watch);
  return {
    origin,
    context,
    offOrigin,
    consoleLines,
    async newPage(path) {
      const page = await context.newPage();
      page.on("request", watch);
      page.on("console", (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
      page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.message}`));
      await page.goto(`${origin}/${path}`);
      return page;
    },
    async close() {
      await context.close();
      server?.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** The page's WebGPU adapter as { vendor, architecture, description, isFallbackAdapter }, or
 *  { none: why }; what the worker sees too (both ask navigator.gpu). */
export function adapterInfo(page) {
  return page.evaluate(async () => {
    if (!navigator.gpu) return { none: "no navigator.gpu" };
    const a = await navigator.gpu.requestAdapter();
    if (!a) return { none: "no adapter" };
    const info = a.info || {};
    return {
      vendor: info.vendor ?? "",
      architecture: info.architecture ?? "",
      description: info.description ?? "",
      isFallbackAdapter: Boolean(info.isFallbackAdapter ?? a.isFallbackAdapter),
    };
  });
}
