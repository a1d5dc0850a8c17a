// The dashboard in a real headless Chromium: sign in; a test alert raised on another screen
// appears on this one without a reload (only the server-sent events can bring it); press 1 on
// the virtual phone; see it acknowledged with its timeline; analytics with their charts; call
// history; who is on call per schedule; a second alert acknowledged by voice (the say box); a
// third acknowledged and then resolved with the dashboard's own buttons; an alert skipped as
// too old when alertcall started says so and is resolved with one click. Run by the Rust test
// `browser::dashboard_in_chromium`, which starts `alertcall` with alertcall.example.toml and
// passes ALERTCALL_URL (and what lib.mjs needs). The unreached banners: banners.mjs.
import { TIMEOUT, run, shot, show, signIn, step } from "./lib.mjs";

const url = process.env.ALERTCALL_URL;
if (!url) throw new Error("ALERTCALL_URL is required");

await run(async ({ browser, failures, watch }) => {
  // One context: a second page in it shares the sign-in, like a second screen of the same nurse.
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = watch(await context.newPage());

  step("signed-out visitors are sent to the sign-in page");
  await page.goto(`${url}/`);
  await page.waitForURL(/\/login$/);
  await page.fill("input[name=username]", "admin");
  await page.fill("input[name=password]", "not the password");
  await page.click("button[type=submit]");
  await page.waitForSelector("text=Wrong name or password.");

  step("sign in");
  await signIn(page, url);
  // Survives only if the page is never reloaded.
  await page.evaluate(() => { window.__noReload = true; });
  await shot(page, "1-signed-in");

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
  await shot(page, "2-ringing");

  step("answer the virtual phone and press 1");
  await page.locator(".phone.ringing button.answer").first().click();
  const one = page.locator('.phone button.key[data-key="1"]:not([disabled])').first();
  await one.waitFor();
  await page.locator(".phone .heard p").first().waitFor();
  await one.click();

  step("the alert leaves the active board");
  await page.locator(`#alerts tbody tr[data-alert="${alertId}"]`).waitFor({ state: "detached" });

  step("its timeline shows who acknowledged and how long it took");
  await show(page, `#/alert/${encodeURIComponent(alertId)}`, "alert");
  await page.waitForFunction(() => /^phone:\+/.test(document.getElementById("acked-by")?.textContent || ""));
  // Sentences in the hospital's time with names; the raw entries only behind "details".
  const sentences = await page.locator("#timeline .sentence").allInnerTexts();
  const wanted = [
    /^\d\d:\d\d:\d\d Alert raised \(critical\)$/,
    /^\d\d:\d\d:\d\d Called .+ \(\+\d+\)/,
    /^\d\d:\d\d:\d\d .+'s phone is ringing$/,
    /^\d\d:\d\d:\d\d .+ acknowledged by pressing 1$/,
  ];
  for (const want of wanted) {
    if (!sentences.some((s) => want.test(s))) failures.push(`no timeline sentence like ${want}:\n${sentences.join("\n")}`);
  }
  const shown = await page.locator("#timeline").innerText();
  if (shown.includes("call.placed")) failures.push(`raw entries shown without asking:\n${shown}`);
  const placed = page.locator("#timeline li.call-placed details.raw");
  await placed.locator("summary").click();
  const raw = await placed.innerText();
  for (const part of ["call.placed", "engine", "provider_call_id"]) {
    if (!raw.includes(part)) failures.push(`the details of call.placed lack ${part}:\n${raw}`);
  }
  const tta = await page.locator("#time-to-ack").innerText();
  if (!/\d/.test(tta)) failures.push(`no time to acknowledge shown: ${tta}`);
  await shot(page, "3-timeline");

  step("analytics show the chart");
  await page.click('nav a[data-view="analytics"]');
  await page.waitForFunction(() => document.body.dataset.loaded === "analytics");
  await page.locator("#hours-svg rect.bar").first().waitFor();
  await page.locator("#units-svg rect.p50").first().waitFor();
  const acknowledged = await page.locator("#kpi-acknowledged .value").innerText();
  if (!acknowledged.startsWith("1 ")) failures.push(`analytics: acknowledged shows ${acknowledged}`);
  await shot(page, "4-analytics");

  step("on call and call history render");
  await page.click('nav a[data-view="history"]');
  await page.waitForFunction(() => document.body.dataset.loaded === "history");
  await page.locator("#history tbody tr .badge.call-acknowledged", { hasText: "acknowledged" }).first().waitFor();
  await shot(page, "5-history");

  step("on call: each schedule's nurse now and the next handover");
  await page.click('nav a[data-view="oncall"]');
  await page.waitForFunction(() => document.body.dataset.loaded === "oncall");
  const oncall = await page.locator("#oncall tbody").innerText();
  for (const schedule of ["icu", "ward3"]) {
    if (!oncall.includes(schedule)) failures.push(`on call lacks schedule ${schedule}:\n${oncall}`);
  }
  if (!/\d{4}-\d{2}-\d{2}/.test(oncall)) failures.push(`on call shows no handover time:\n${oncall}`);
  await shot(page, "5b-oncall");

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
  await shot(page, "6-said");

  step("a third alert is acknowledged, then resolved, with the dashboard's buttons");
  const third = `Browser test ${Date.now()}: desaturation`;
  await page.fill("#raise input[name=message]", third);
  await page.click("#raise button[type=submit]");
  const thirdRow = page.locator("#alerts tbody tr", { hasText: third });
  await thirdRow.waitFor();
  const thirdId = await thirdRow.getAttribute("data-alert");
  await show(page, `#/alert/${encodeURIComponent(thirdId)}`, "alert");
  await page.click("#ack-btn");
  await page.waitForFunction(() => (document.getElementById("acked-by")?.textContent || "") === "dashboard:admin");
  await page.click("#resolve-btn");
  await page.waitForFunction(() => (document.getElementById("timeline")?.textContent || "").includes("Resolved by admin on the dashboard"));
  await shot(page, "7-dashboard-actions");

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
  await shot(page, "8-skipped");
  await resolveSkipped.click();
  await skippedRow.waitFor({ state: "detached" });
  await resolveSkipped.waitFor({ state: "hidden" });

  if (!(await page.evaluate(() => window.__noReload === true))) failures.push("the page was reloaded");
});
console.log("dashboard flow ok");
