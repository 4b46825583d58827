// Browser checks of the annotation app (align label), driven by
// crates/align-label/tests/browser.rs, which starts the server and checks the export.
//
//   node label.test.mjs annotate --base URL --mouse TOKEN --keyboard TOKEN --shots DIR
//   node label.test.mjs admin --base URL --admin TOKEN --shots DIR
//
// Prints `RESULT {json}` last: the labels given (annotator, prompt, picked text or null for a
// tie, comment, strength), which the Rust test finds in the export.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import assert from "node:assert/strict";

const [mode, ...rest] = process.argv.slice(2);
const opt = {};
for (let i = 0; i < rest.length; i += 2) opt[rest[i].replace(/^--/, "")] = rest[i + 1];

const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

/** A fresh Chromium profile (its own --user-data-dir) per annotator, so sessions never mix. */
async function session(fn) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "align-label-chromium-"));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: "/usr/bin/chromium", headless: true, args: ARGS,
    viewport: { width: 1360, height: 900 }, deviceScaleFactor: 1,
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("dialog", (d) => { errors.push("dialog: " + d.message()); d.dismiss(); });
  try {
    return await fn(page);
  } finally {
    await ctx.close();
    fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(errors, [], "page errors or dialogs (an executed script would show here)");
  }
}

async function login(page, token, expectPath) {
  await page.goto(`${opt.base}/login#token=${token}`);
  await page.waitForURL(`**${expectPath}`);
}

async function waitDone(page, k) {
  await page.waitForFunction((k) => document.querySelector("#progress-text").textContent.startsWith(`${k} /`), k);
}

async function task(page) {
  await page.waitForSelector("#work:not([hidden])");
  return {
    prompt: await page.textContent("#prompt .msg.user .content"),
    a: await page.textContent("#text-a"),
    b: await page.textContent("#text-b"),
  };
}

/** The markup in responses is shown as text and never runs. */
async function assertInert(page) {
  assert.equal(await page.evaluate(() => window.__pwned), undefined, "a script from a response ran");
  assert.equal(await page.locator(".response img, .response script, .response b").count(), 0, "markup was rendered");
}

// Which text is the better response of each fixture pair (the stored first one).
const GOOD = ["Sure! Here is a greeting.", "Mix 500 g", "Not quite", "Find its id", "apple, fig, pear", "= 51",
  "Thanks for", "Jane Austen", "Water boils", "I don't know", "Sorry, I can't help", "Use a numbered list"];
const isGood = (text) => GOOD.some((g) => text.includes(g));

async function annotate() {
  const labels = [];

  // Annotator 1: the mouse.
  await session(async (page) => {
    await login(page, opt.mouse, "/annotate");
    for (let k = 0; k < 3; k++) {
      const t = await task(page);
      await waitDone(page, k);
      if (k === 0) {
        assert.ok(t.a.includes("<script>") || t.b.includes("<script>"), "the script tag is shown as text");
        assert.ok(t.a.includes("<img") || t.b.includes("<img"), "the img tag is shown as text");
        await assertInert(page);
      }
      const side = isGood(t.a) ? "A" : "B";
      await page.click(`#choice-${side}`);
      assert.ok(await page.locator(`#choice-${side}`).evaluate((e) => e.classList.contains("selected")));
      const strength = k === 2 ? "slightly" : "clearly";
      await page.click(`#strength-${strength}`);
      await page.click(`.axis[data-axis=helpful] button[data-v=${side}]`);
      if (k === 1) await page.click(".axis[data-axis=honest] button[data-v=tie]");
      const comment = k === 1 ? "Precise quantities and times; B is vague." : `mouse ${k}`;
      await page.fill("#comment", comment);
      if (k === 1 && opt.shots) {
        await page.waitForSelector("#toast", { state: "hidden" });
        await page.screenshot({ path: path.join(opt.shots, "label-annotate.png"), fullPage: true });
      }
      await page.click("#submit");
      await waitDone(page, k + 1);
      labels.push({ annotator: "ann0", prompt: t.prompt, picked: side === "A" ? t.a : t.b, comment, strength, helpful: "same" });
    }
    await assertInert(page);
  });

  // Annotator 2: the keyboard only.
  await session(async (page) => {
    await login(page, opt.keyboard, "/annotate");
    const plan = [
      { key: "2", strength: "c", comment: "keys 0" },
      { key: "1", strength: null, comment: "" },
      { key: "3", strength: null, comment: "keys 2: equally good" },
    ];
    for (let k = 0; k < plan.length; k++) {
      const t = await task(page);
      await waitDone(page, k);
      const p = plan[k];
      await page.keyboard.press(p.key);
      const choice = { "1": "A", "2": "B", "3": "tie" }[p.key];
      assert.ok(await page.locator(`#choice-${choice}`).evaluate((e) => e.classList.contains("selected")), `key ${p.key}`);
      if (p.strength) {
        await page.keyboard.press(p.strength);
        assert.ok(await page.locator("#strength-clearly").evaluate((e) => e.classList.contains("selected")));
      }
      if (p.comment) {
        await page.keyboard.press("/");
        await page.keyboard.type(p.comment);
      }
      await page.keyboard.press("Enter");
      await waitDone(page, k + 1);
      labels.push({
        annotator: "ann1", prompt: t.prompt, comment: p.comment,
        picked: choice === "tie" ? null : choice === "A" ? t.a : t.b,
        strength: p.strength ? "clearly" : null, helpful: null,
      });
    }
    // The guidelines drawer opens with G and closes with Escape.
    await page.keyboard.press("g");
    await page.waitForSelector("#guidelines:not([hidden])");
    assert.ok((await page.textContent("#guidelines-text")).includes("Be careful."));
    await page.keyboard.press("Escape");
    await page.waitForSelector("#guidelines", { state: "hidden" });
  });
  return { labels };
}

async function admin() {
  return session(async (page) => {
    await login(page, opt.admin, "/admin");
    await page.waitForSelector("#detail:not([hidden])");
    await page.waitForSelector(".matrix-table");
    const fleiss = await page.textContent("#t-fleiss");
    assert.notEqual(fleiss, "–", "Fleiss' kappa is shown");
    assert.equal(await page.locator("#quality-table tbody tr").count(), 5);
    assert.equal(await page.locator(".matrix-table tbody tr").count(), 5);
    assert.ok((await page.textContent("#accounts-table")).includes("ann0"));
    assert.equal(await page.locator("#projects-table a[href*='export?aggregate=soft']").count(), 1);
    await assertInert(page);
    if (opt.shots) await page.screenshot({ path: path.join(opt.shots, "label-admin.png"), fullPage: true });
    return { fleiss };
  });
}

const result = mode === "annotate" ? await annotate() : mode === "admin" ? await admin() : null;
if (!result) {
  console.error("usage: node label.test.mjs annotate|admin --base URL ...");
  process.exit(2);
}
console.log("RESULT " + JSON.stringify(result));
