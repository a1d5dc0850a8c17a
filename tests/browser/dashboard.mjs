// The dashboard in a real headless Chromium: sign in; a test alert raised on another screen
// appears on this one without a reload (only the server-sent events can bring it); press 1 on
// the virtual phone; see it acknowledged with its timeline; analytics with their charts; call
// history; who is on call per schedule; a second alert acknowledged by voice (the say box); a
// third acknowledged and then resolved with the dashboard's own buttons; an alert skipped as
// too old when alertcall started says so and is resolved with one click. Run by the Rust test
// `browser::dashboard_in_chromium`, which starts `alertcall` with alertcall.example.toml and
// passes ALERTCALL_URL, ALERTCALL_PASSWORD and SCREENSHOTS.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const url = process.env.ALERTCALL_URL;
const password = process.env.ALERTCALL_PASSWORD;
const shots = process.env.SCREENSHOTS;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!url || !password || !shots) throw new Error("ALERTCALL_URL, ALERTCALL_PASSWORD and SCREENSHOTS are required");
mkdirSync(shots, { recursive: true });

const TIMEOUT = 15_000;
const step = (what) => console.log(`- ${what}`);

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
const failures = [];
let page;
try {
  // One context: a second page in it shares the sign-in, like a second screen of the same nurse.
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") failures.push(`console error: ${m.text()} at ${JSON.stringify(m.location())}`); });
  page.on("response", (r) => { if (r.status() >= 400 && !r.url().endsWith("/login")) failures.push(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`); });

  step("signed-out visitors are sent to the sign-in page");
  await page.goto(`${url}/`);
  await page.waitForURL(/\/login$/);
  await page.fill("input[name=username]", "admin");
  await page.fill("input[name=password]", "not the password");
  await page.click("button[type=submit]");
  await page.waitForSelector("text=Wrong name or password.");

  step("sign in");
  await page.fill("input[name=username]", "admin");
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  await page.waitForURL(`${url}/`);
  await page.waitForSelector("#live.on");
  await page.waitForFunction(() => document.body.dataset.loaded === "board");
  // Survives only if the page is never reloaded.
  await page.evaluate(() => { window.__noReload = true; });
  await page.screenshot({ path: join(shots, "1-signed-in.png"), fullPage: true });

  step("raise a test alert from the form on another screen");
  const message = `Browser test ${Date.now()}: seizure activity`;
  const other = await context.newPage();
  other.setDefaultTimeout(TIMEOUT);
  await other.goto(`${url}/`);
  await other.waitForFunction(() => document.body.dataset.loaded === "board");
  await other.fill("#raise input[name=message]", message);
  await other.click("#raise button[type=submit]");
  await other.locator("#alerts tbody tr", { hasText: message }).waitFor();
  await other.close();

  step("it appears on this board without a reload, ringing");
  const row = page.locator("#alerts tbody tr", { hasText: message });
  await row.waitFor();
  const alertId = await row.getAttribute("data-alert");
  await page.locator(`#alerts tbody tr[data-alert="${alertId}"] .badge.ringing`).waitFor();
  await page.locator(".phone.ringing").first().waitFor();
  await page.screenshot({ path: join(shots, "2-ringing.png"), fullPage: true });

  step("answer the virtual phone and press 1");
  await page.locator(".phone.ringing button.answer").first().click();
  const one = page.locator('.phone button.key[data-key="1"]:not([disabled])').first();
  await one.waitFor();
  await page.locator(".phone .heard p").first().waitFor();
  await one.click();

  step("the alert leaves the active board");
  await page.locator(`#alerts tbody tr[data-alert="${alertId}"]`).waitFor({ state: "detached" });

  step("its timeline shows who acknowledged and how long it took");
  await page.evaluate((id) => { window.location.hash = `#/alert/${encodeURIComponent(id)}`; }, alertId);
  await page.waitForFunction(() => document.body.dataset.loaded === "alert");
  await page.waitForFunction(() => /^phone:\+/.test(document.getElementById("acked-by")?.textContent || ""));
  const timeline = await page.locator("#timeline").innerText();
  for (const kind of ["alert.triggered", "call.placed", "call.ringing", "menu.choice", "alert.acknowledged"]) {
    if (!timeline.includes(kind)) failures.push(`timeline lacks ${kind}:\n${timeline}`);
  }
  const tta = await page.locator("#time-to-ack").innerText();
  if (!/\d/.test(tta)) failures.push(`no time to acknowledge shown: ${tta}`);
  await page.screenshot({ path: join(shots, "3-timeline.png"), fullPage: true });

  step("analytics show the chart");
  await page.click('nav a[data-view="analytics"]');
  await page.waitForFunction(() => document.body.dataset.loaded === "analytics");
  await page.locator("#hours-svg rect.bar").first().waitFor();
  await page.locator("#units-svg rect.p50").first().waitFor();
  const acknowledged = await page.locator("#kpi-acknowledged .value").innerText();
  if (!acknowledged.startsWith("1 ")) failures.push(`analytics: acknowledged shows ${acknowledged}`);
  await page.screenshot({ path: join(shots, "4-analytics.png"), fullPage: true });

  step("on call and call history render");
  await page.click('nav a[data-view="history"]');
  await page.waitForFunction(() => document.body.dataset.loaded === "history");
  await page.locator("#history tbody tr .badge.answered").first().waitFor();
  await page.screenshot({ path: join(shots, "5-history.png"), fullPage: true });

  step("on call: each schedule's nurse now and the next handover");
  await page.click('nav a[data-view="oncall"]');
  await page.waitForFunction(() => document.body.dataset.loaded === "oncall");
  const oncall = await page.locator("#oncall tbody").innerText();
  for (const schedule of ["icu", "ward3"]) {
    if (!oncall.includes(schedule)) failures.push(`on call lacks schedule ${schedule}:\n${oncall}`);
  }
  if (!/\d{4}-\d{2}-\d{2}/.test(oncall)) failures.push(`on call shows no handover time:\n${oncall}`);
  await page.screenshot({ path: join(shots, "5b-oncall.png"), fullPage: true });

  step("a second alert is acknowledged by voice: the virtual phone's say box");
  await page.click('nav a[data-view="board"]');
  await page.waitForFunction(() => document.body.dataset.loaded === "board");
  const spoken = `Browser test ${Date.now()}: fall in room 7`;
  await page.fill("#raise input[name=message]", spoken);
  await page.click("#raise button[type=submit]");
  const second = page.locator("#alerts tbody tr", { hasText: spoken });
  await second.waitFor();
  const secondId = await second.getAttribute("data-alert");
  await page.locator(".phone.ringing button.answer").first().click();
  const say = page.locator(".phone form.say input:not([disabled])").first();
  await say.waitFor();
  await say.fill("on my way");
  // Any change anywhere redraws the phones; what is being typed must survive it.
  await page.evaluate(() => refresh());
  const kept = await page.locator(".phone form.say input").first().inputValue();
  if (kept !== "on my way") failures.push(`a redraw lost the say box's text: ${JSON.stringify(kept)}`);
  await page.locator(".phone form.say button").first().click();
  await page.locator(`#alerts tbody tr[data-alert="${secondId}"]`).waitFor({ state: "detached" });
  await page.screenshot({ path: join(shots, "6-said.png"), fullPage: true });

  step("a third alert is acknowledged, then resolved, with the dashboard's buttons");
  const third = `Browser test ${Date.now()}: desaturation`;
  await page.fill("#raise input[name=message]", third);
  await page.click("#raise button[type=submit]");
  const thirdRow = page.locator("#alerts tbody tr", { hasText: third });
  await thirdRow.waitFor();
  const thirdId = await thirdRow.getAttribute("data-alert");
  await page.evaluate((id) => { window.location.hash = `#/alert/${encodeURIComponent(id)}`; }, thirdId);
  await page.waitForFunction(() => document.body.dataset.loaded === "alert");
  await page.click("#ack-btn");
  await page.waitForFunction(() => (document.getElementById("acked-by")?.textContent || "") === "dashboard:admin");
  await page.click("#resolve-btn");
  await page.waitForFunction(() => (document.getElementById("timeline")?.textContent || "").includes("alert.resolved"));
  await page.screenshot({ path: join(shots, "7-dashboard-actions.png"), fullPage: true });

  step("an alert that reaches nobody has a red banner with the reason, what happens next and the fix");
  const unreached = process.env.UNREACHED_ALERT;
  await page.evaluate(() => { window.location.hash = "#/"; });
  await page.waitForFunction(() => document.body.dataset.loaded === "board");
  const banner = page.locator(`#unreached-banners .banner.unreached[data-alert="${unreached}"][data-reason="skipped"]`);
  await banner.waitFor();
  const text = await banner.innerText();
  for (const part of ["NOBODY IS BEING REACHED", "older than 24 h", "Next: Nobody will be called", "Fix: "]) {
    if (!text.includes(part)) failures.push(`banner lacks ${JSON.stringify(part)}: ${text}`);
  }
  const title = await page.locator(`#alerts tbody tr[data-alert="${unreached}"] .badge.skipped`).getAttribute("title");
  if (!(title || "").includes("older than 24 h")) failures.push(`the stale badge does not explain itself: ${title}`);
  await page.screenshot({ path: join(shots, "8-unreached-banner.png"), fullPage: true });

  step("cutover day: an alert skipped as too old says why, and one click resolves it");
  await page.click('nav a[data-view="board"]');
  await page.waitForFunction(() => document.body.dataset.loaded === "board");
  const skippedRow = page.locator("#alerts tbody tr.status-skipped");
  await skippedRow.waitFor();
  const skippedText = await skippedRow.innerText();
  if (!skippedText.includes("skipped: older than 24 h when alertcall started")) {
    failures.push(`the skipped alert does not say why:\n${skippedText}`);
  }
  const resolveSkipped = page.locator("#resolve-skipped");
  if ((await resolveSkipped.innerText()) !== "Resolve 1 skipped alert") {
    failures.push(`resolve button says ${await resolveSkipped.innerText()}`);
  }
  await page.screenshot({ path: join(shots, "8-skipped.png"), fullPage: true });
  await resolveSkipped.click();
  await skippedRow.waitFor({ state: "detached" });
  await resolveSkipped.waitFor({ state: "hidden" });

  if (!(await page.evaluate(() => window.__noReload === true))) failures.push("the page was reloaded");
} catch (e) {
  failures.push(e.stack || String(e));
  if (page) {
    await page.screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
    failures.push(`page at failure: ${await page.locator("body").innerText().catch(() => "?")}`);
  }
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log("dashboard flow ok");
