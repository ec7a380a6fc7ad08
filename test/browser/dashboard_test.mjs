// The dashboard in a real browser: Debian's Chromium driven by puppeteer-core
// (test/browser/package.json; scripts/setup installs both, nothing downloads
// a browser). Starts sluice and sluice-echo backends on loopback (the
// binaries come from SLUICE_BIN and SLUICE_ECHO_BIN, as for the C++
// integration tests) and proves:
//   - the page renders every backend;
//   - stopping a backend turns it down on the page within 2 s, without a reload;
//   - an action with the token drains a backend (and one without it is refused);
//   - the page logs no console errors.
// With SLUICE_DASHBOARD_SCREENSHOT=PATH it also saves a screenshot there
// (docs/dashboard.png is made so). Exit 77 (meson: skipped) when Chromium
// or puppeteer-core is missing.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const chromium = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const DOWN_WITHIN_MS = 2000;
const TOKEN = "browser-test-token-4f1c";

let puppeteer;
try {
  puppeteer = createRequire(path.join(here, "package.json"))("puppeteer-core");
} catch {
  console.log("SKIP: puppeteer-core is not installed (run scripts/setup)");
  process.exit(77);
}
if (!existsSync(chromium)) {
  console.log(`SKIP: ${chromium} is missing (run scripts/setup)`);
  process.exit(77);
}

const children = [];
const dir = mkdtempSync(path.join(os.tmpdir(), "sluice-browser-"));
let browser = null;

function cleanup() {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}

function fail(message) {
  throw new Error(message);
}

// Starts `program` and resolves with the first match of `pattern` in its
// output (both streams), or rejects after `timeoutMs`.
function start(program, args, pattern, timeoutMs = 10000) {
  const child = spawn(program, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let output = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${program}: no ${pattern} within ${timeoutMs} ms:\n${output}`)), timeoutMs);
    const onData = (chunk) => {
      output += chunk;
      const match = output.match(pattern);
      if (match) {
        clearTimeout(timer);
        resolve({ child, match, output: () => output });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => reject(new Error(`${program} exited (${code}):\n${output}`)));
  });
}

// A little traffic through the listener, so the rates and sparklines move.
function traffic(port, stop) {
  const tick = () => {
    if (stop.done) return;
    const socket = net.connect(port, "127.0.0.1", () => socket.end("x".repeat(2000)));
    socket.on("data", () => {});
    socket.on("error", () => {});
    socket.on("close", () => setTimeout(tick, 40));
  };
  tick();
}

async function main() {
  const echo = process.env.SLUICE_ECHO_BIN || fail("SLUICE_ECHO_BIN is not set");
  const sluiceBin = process.env.SLUICE_BIN || fail("SLUICE_BIN is not set");
  const names = ["app-1", "app-2", "app-3"];
  const backends = {};
  for (const name of names) {
    const started = await start(echo, ["--listen", "127.0.0.1:0", "--name", name], /listening on (\S+)/);
    backends[name] = { child: started.child, address: started.match[1] };
  }
  writeFileSync(path.join(dir, "token"), TOKEN + "\n");
  writeFileSync(path.join(dir, "sluice.toml"), `
[global]
workers = 1

[admin]
socket = ""
metrics = "127.0.0.1:0"
token_file = "${dir}/token"

[[listeners]]
name = "web"
listen = "127.0.0.1:0"
pool = "web"

[pools.web]
balance = "least_conn"
health = { interval = "200ms", timeout = "200ms", rise = 1, fall = 1 }
backends = [
${names.map((n) => `  { address = "${backends[n].address}", name = "${n}" },`).join("\n")}
]
`);
  const sluice = await start(sluiceBin, ["-c", path.join(dir, "sluice.toml")], /sluice started/);
  const metrics = sluice.output().match(/metrics at http:\/\/(\S+)\/metrics/)[1];
  const listener = Number(sluice.output().match(/listener web listening on 127\.0\.0\.1:(\d+)/)[1]);
  const url = `http://${metrics}/`;
  const trafficStop = { done: false };
  traffic(listener, trafficStop);

  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    userDataDir: path.join(dir, "chromium-profile"),
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      `--user-data-dir=${path.join(dir, "chromium-profile")}`],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  const consoleErrors = [];
  page.on("console", (message) => { if (message.type() === "error") consoleErrors.push(message.text()); });
  page.on("pageerror", (error) => consoleErrors.push(String(error)));
  page.on("requestfailed", (request) => consoleErrors.push(`request failed: ${request.url()}`));

  await page.goto(url, { waitUntil: "load" });
  // Every backend is on the page, up.
  for (const name of names)
    await page.waitForSelector(`tr[data-backend="web/${name}"][data-health="up"]`, { timeout: 5000 });
  const shown = await page.$$eval("tr[data-backend]", (rows) => rows.map((r) => r.dataset.backend));
  if (shown.sort().join(",") !== names.map((n) => "web/" + n).join(","))
    fail(`the page shows ${shown}, expected every backend of ${names}`);
  await page.evaluate(() => { window.__notReloaded = true; });

  // Stop one: down on the page within 2 s, without a reload.
  backends["app-3"].child.kill("SIGTERM");
  const stoppedAt = Date.now();
  await page.waitForSelector('tr[data-backend="web/app-3"][data-health="down"]', { timeout: DOWN_WITHIN_MS })
    .catch(() => fail(`web/app-3 not shown down within ${DOWN_WITHIN_MS} ms of its stop`));
  const tookMs = Date.now() - stoppedAt;
  if (!(await page.evaluate(() => window.__notReloaded === true)))
    fail("the page reloaded to show the change");
  const banner = await page.$eval("#overall", (e) => e.textContent);
  if (banner !== "1 backend DOWN")
    fail(`the header says "${banner}", expected "1 backend DOWN"`);
  await page.waitForFunction(() => document.querySelector("#events").textContent.includes("web/app-3 is DOWN"),
    { timeout: 3000 });

  // An action without the token is refused (asked from here: a refused
  // request in the page would log a console error by itself) ...
  const refused = await fetch(`http://${metrics}/api/servers/web/app-1/state`, { method: "POST", body: "state=drain" });
  if (refused.status !== 403)
    fail(`an action without the token got ${refused.status}, expected 403`);
  await page.waitForSelector('tr[data-backend="web/app-1"][data-state="ready"] button[data-action="drain"]', { timeout: 3000 });
  // ... one with it drains the backend.
  await page.type("#token", TOKEN);
  await page.click('tr[data-backend="web/app-1"] button[data-action="drain"]');
  await page.waitForSelector('tr[data-backend="web/app-1"][data-state="drain"]', { timeout: 3000 });
  const state = await (await fetch(`http://${metrics}/api/state`)).json();
  const app1 = state.backends.find((b) => b.name === "app-1");
  if (app1.state !== "drain")
    fail(`/api/state says web/app-1 is ${app1.state}, expected drain`);
  await page.waitForFunction(() => document.querySelector("#events").textContent.includes("web/app-1 admin state ready -> drain"),
    { timeout: 3000 });

  if (consoleErrors.length)
    fail(`console errors: ${consoleErrors.join("\n")}`);

  if (process.env.SLUICE_DASHBOARD_SCREENSHOT) {
    await new Promise((resolve) => setTimeout(resolve, Number(process.env.SLUICE_SCREENSHOT_WAIT_MS || 0)));
    if (process.env.SLUICE_SCREENSHOT_WIDTH)  // e.g. 390 for a phone
      await page.setViewport({ width: Number(process.env.SLUICE_SCREENSHOT_WIDTH), height: 900 });
    await page.screenshot({ path: process.env.SLUICE_DASHBOARD_SCREENSHOT, fullPage: true });
  }
  trafficStop.done = true;
  console.log(`ok: ${names.length} backends rendered; web/app-3 shown down ${tookMs} ms after its stop; ` +
    "drain with the token applied, without it refused; no console errors");
}

try {
  await main();
  await browser?.close();
  cleanup();
  process.exit(0);
} catch (error) {
  console.error("FAIL:", error.message);
  await browser?.close().catch(() => {});
  cleanup();
  process.exit(1);
}
