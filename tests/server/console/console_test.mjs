// The web console end to end: `zerodet serve` on loopback over a repository of a real model
// (../shared), the page in headless Chromium (Debian's chromium, driven by playwright-core):
// the models table lists the model, an image chosen in the page comes back with its boxes
// drawn and listed exactly as /v1/detect answers for the same bytes, the live metrics count the
// request, a file that is not an image shows the server's one-line error, the page logs no
// errors, and a screenshot is written (console.png in the test's output directory).
//
// Usage: node console_test.mjs --zerodet BIN --shared DIR --out DIR
// Exits 77 (CTest: skipped) when Chromium or playwright-core is missing, 0 on success.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";

const args = {};
for (let i = 2; i + 1 < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
}
for (const required of ["zerodet", "shared", "out"]) {
  if (!args[required]) {
    console.error(`usage: node console_test.mjs --zerodet BIN --shared DIR --out DIR`);
    process.exit(2);
  }
}
const chromiumPath = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(fs.existsSync);
let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (e) {
  console.log("SKIP: playwright-core is not installed (scripts/setup.sh runs npm ci)");
  process.exit(77);
}
if (!chromiumPath) {
  console.log("SKIP: chromium is not installed (apt install chromium)");
  process.exit(77);
}

let failures = 0;
function check(condition, what) {
  console.log(`${condition ? "ok" : "FAIL"}: ${what}`);
  if (!condition) failures++;
}

// A repository with one model, its file aged so the server offers it at once.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "zerodet-console-"));
const versionDir = path.join(dir, "repo", "yolo", "1");
fs.mkdirSync(versionDir, { recursive: true });
const modelFile = path.join(versionDir, "model.onnx");
fs.copyFileSync(path.join(args.shared, "models", "yolo11n-320.onnx"), modelFile);
const hourAgo = new Date(Date.now() - 3600 * 1000);
fs.utimesSync(modelFile, hourAgo, hourAgo);
const image = path.join(args.shared, "images", "bus.jpg");
const notImage = path.join(dir, "notes.jpg");
fs.writeFileSync(notImage, "this is not a JPEG\n");

const server = spawn(args.zerodet, ["serve", "--repo", path.join(dir, "repo"),
                                    "--http", "127.0.0.1:0", "--grpc", "off",
                                    "--metrics", "off", "--threads", "1"],
                     { stdio: ["ignore", "pipe", "inherit"] });
let browser;
const cleanup = async () => {
  if (browser) await browser.close().catch(() => {});
  server.kill("SIGTERM");
  fs.rmSync(dir, { recursive: true, force: true });
};
const timer = setTimeout(async () => {
  console.error("FAIL: the test took longer than 120 s");
  await cleanup();
  process.exit(1);
}, 120000);

try {
  const portLine = await new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: server.stdout });
    lines.once("line", resolve);
    server.once("exit", (code) => reject(new Error(`zerodet serve exited with ${code}`)));
  });
  const port = JSON.parse(portLine).http_port;
  const base = `http://127.0.0.1:${port}`;

  // What the server itself answers for the image, to compare the page with.
  const expected = await (await fetch(`${base}/v1/detect?model=yolo&conf=0.25`,
                                      { method: "POST", body: fs.readFileSync(image) })).json();
  check(expected.detections.length > 0, `/v1/detect finds ${expected.detections.length} objects`);

  // No sandbox (CI runs as root) and none of Chromium's own network traffic (a closed network
  // refuses it, slowly).
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") pageErrors.push(m.text()); });

  const response = await page.goto(`${base}/`);
  check(response.status() === 200, "GET / answers 200");
  check((response.headers()["content-security-policy"] || "").includes("default-src 'self'"),
        "the page carries a content security policy");
  await page.waitForSelector('#models tr[data-model="yolo"]', { timeout: 20000 });
  check(true, "the models table lists the repository's model");
  check(await page.inputValue("#model") === "yolo", "the detect form offers the model");

  await page.setInputFiles("#file", image);
  await page.waitForFunction(() => document.getElementById("result").dataset.boxes !== "",
                             null, { timeout: 30000 });
  const boxes = Number(await page.getAttribute("#result", "data-boxes"));
  check(boxes === expected.detections.length,
        `the page drew ${boxes} boxes; /v1/detect answers ${expected.detections.length}`);
  const rows = await page.$$eval("#detections tr", (trs) =>
    trs.map((tr) => Array.from(tr.children, (td) => td.textContent)));
  check(rows.length === expected.detections.length, "one table row per detection");
  check(rows.every((row, i) => row[0] === expected.detections[i].class &&
                               row[1] === expected.detections[i].score.toFixed(3)),
        "classes and scores in the table are the server's");
  const size = await page.$eval("#result", (c) => [c.width, c.height]);
  check(size[0] === expected.width && size[1] === expected.height,
        `the canvas has the image's size (${size[0]}x${size[1]})`);
  // A box edge is drawn in the box's colour where the server placed it (source pixels).
  const first = expected.detections[0];
  const edge = await page.$eval("#result", (c, box) => {
    const g = c.getContext("2d");
    const [x1, y1, x2, y2] = box;
    return Array.from(g.getImageData(Math.round(x1), Math.round((y1 + y2) / 2), 1, 1).data);
  }, first.box);
  const palette = [[240, 68, 56], [18, 183, 106], [46, 144, 250], [247, 144, 9],
                   [122, 90, 248], [238, 70, 188], [21, 183, 158]];
  const colour = palette[first.class_id % palette.length];
  check(edge.slice(0, 3).every((v, i) => Math.abs(v - colour[i]) <= 8),
        `the first box's left edge is drawn (pixel ${edge.slice(0, 3)}, expected ${colour})`);

  // The live metrics poll /metrics every 2 s: two requests were served by now.
  await page.waitForFunction(() => document.getElementById("m-loaded").textContent === "1",
                             null, { timeout: 10000 });
  check(true, "the live metrics show the loaded model");
  const memory = await page.$eval('#models tr[data-model="yolo"]',
                                  (tr) => tr.children[3].textContent);
  check(/[KMG]iB/.test(memory), `the models table shows the model's memory (${memory})`);

  await page.screenshot({ path: path.join(args.out, "console.png"), fullPage: true });
  check(fs.statSync(path.join(args.out, "console.png")).size > 10000, "screenshot written");

  await page.setInputFiles("#file", notImage);
  await page.waitForFunction(() => document.getElementById("detect-error").textContent !== "",
                             null, { timeout: 10000 });
  const error = await page.textContent("#detect-error");
  check(!error.includes("\n") && error.length > 10, `a bad image shows one line: "${error}"`);
  check(pageErrors.filter((e) => !e.includes("400")).length === 0,
        `no script errors on the page (${pageErrors.join(" | ")})`);
} catch (e) {
  console.error("FAIL:", e.stack || e.message);
  failures++;
}
clearTimeout(timer);
await cleanup();
console.log(failures ? `${failures} check(s) failed` : "all checks passed");
process.exit(failures ? 1 : 0);
