// Browser check of the playground of `align serve`, driven by
// crates/align-serve/tests/browser.rs (which starts the server with two models):
//
//   node serve_playground.test.mjs --base URL --a MODEL --b MODEL --prompt TEXT \
//       --max-tokens N [--shot FILE.png]
//
// Opens the page in headless Chromium (fresh profile), picks the two models, sends the prompt
// (greedy, seed 0), waits until both panes finish streaming and prints `RESULT {json}` last:
// both answers and their status lines, which the Rust test compares with the API's answers.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import assert from "node:assert/strict";

const argv = process.argv.slice(2);
const opt = {};
for (let i = 0; i < argv.length; i += 2) opt[argv[i].replace(/^--/, "")] = argv[i + 1];
for (const k of ["base", "a", "b", "prompt", "max-tokens"]) assert.ok(opt[k], `missing --${k}`);

const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "align-serve-chromium-"));
const ctx = await chromium.launchPersistentContext(dir, {
  executablePath: "/usr/bin/chromium", headless: true, args: ARGS,
  viewport: { width: 1280, height: 760 }, deviceScaleFactor: 1,
});
const errors = [];
try {
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push("console: " + m.text()); });
  await page.goto(opt.base + "/", { waitUntil: "domcontentloaded" });
  assert.equal(await page.title(), "align playground");

  // The model lists come from /v1/models.
  await page.waitForFunction(() => document.querySelectorAll("#model-b option").length >= 2);
  await page.selectOption("#model-a", opt.a);
  await page.selectOption("#model-b", opt.b);
  await page.selectOption("#mode", "chat");
  await page.fill("#temperature", "0");
  await page.fill("#seed", "0");
  await page.fill("#max-tokens", String(opt["max-tokens"]));
  await page.fill("#prompt", opt.prompt);
  await page.click("#send");

  // Both panes stream, then say done.
  await page.waitForFunction(() => ["a", "b"].every((s) => document.getElementById("status-" + s).dataset.state === "done"),
    null, { timeout: 60000 });
  const read = (id) => page.$eval(id, (el) => el.textContent);
  const result = {
    a: await read("#out-a"), b: await read("#out-b"),
    status_a: await read("#status-a"), status_b: await read("#status-b"),
  };
  assert.ok(result.a.length > 0 && result.b.length > 0, "both answers are shown: " + JSON.stringify(result));
  assert.match(result.status_a, /tokens in .* finish: (stop|length)/);
  assert.ok(await page.isEnabled("#send"), "the send button is enabled again");
  if (opt.shot) await page.screenshot({ path: opt.shot, fullPage: true });
  assert.deepEqual(errors, [], "page errors");
  console.log("RESULT " + JSON.stringify(result));
} finally {
  await ctx.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
