// Never silent, as a nurse sees it: for every reason an active critical alert can reach
// nobody, the board shows a red banner with the reason's sentence, what happens next and the
// fix, the same as GET /api/v1/health says at that moment; the alert's own page says the same;
// the banners stay readable (contrast, and nothing cut off on a 390 px wide phone); and the
// `failed`, skipped (`stale`) and `not paged` badges explain themselves. One screenshot per
// reason, at both widths. Run by the Rust test `browser::every_unreached_banner_in_chromium`,
// which brings each server into its states and passes (besides what lib.mjs needs) SERVERS:
//   [{ url, label, alerts: [{ id, reason, message }], badges: [{ id, view, kind, explains }] }]
// where a badge is on the board's row of alert `id` (view "board") or in its page's facts
// ("alert"), and has the class `kind`.
import { run, shot, show, signIn, step } from "./lib.mjs";

const servers = JSON.parse(process.env.SERVERS || "[]");
if (!servers.length) throw new Error("SERVERS is required");
for (const b of servers.flatMap((s) => s.badges)) {
  if (!["board", "alert"].includes(b.view)) throw new Error(`badge view must be board or alert: ${JSON.stringify(b)}`);
}

const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
// WCAG 2 AA for normal text.
const MIN_CONTRAST = 4.5;

await run(async ({ browser, failures, watch }) => {
  for (const server of servers) {
    // A context per server: each has its own session cookie.
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = watch(await context.newPage());
    step(`${server.label}: sign in`);
    await signIn(page, server.url);

    for (const a of server.alerts) {
      step(`${server.label}: the board's banner for ${a.reason}`);
      await agreesWithHealth(page, `#unreached-banners`, a);
    }
    // No other banner: each one is an alert's, and says its own reason.
    const banners = await page.locator("#view-board .banner:visible").count();
    if (banners !== server.alerts.length) {
      failures.push(`${server.label}: ${banners} banners for ${server.alerts.length} unreached alerts:\n${await page.locator("#view-board").innerText()}`);
    }
    // A provider that cannot place calls is also said once for the whole board.
    if (server.alerts.some((a) => a.reason === "provider_down")) {
      step(`${server.label}: the board's notice that the provider cannot place calls`);
      const notice = page.locator("#system-notices .notice.critical", { hasText: "cannot place calls" });
      await notice.waitFor();
    }
    failures.push(...(await unreadable(page)));
    await explained(page, server.badges.filter((b) => b.view === "board"));
    await shot(page, `unreached-${server.label}`);

    for (const a of server.alerts) {
      step(`${server.label}: the alert page of ${a.reason} says the same`);
      await show(page, `#/alert/${encodeURIComponent(a.id)}`, "alert");
      await agreesWithHealth(page, "#alert-head", a);
      const title = await page.locator("#alert-head h2 .badge:last-child").getAttribute("title");
      if (!(title || "").includes(a.message)) failures.push(`the alert page's status badge of ${a.reason} does not explain itself: ${JSON.stringify(title)}`);
      // The fallback contact's calls are on no step of the policy.
      for (const row of await page.locator("#alert-calls tbody tr", { hasText: "Charge desk" }).all()) {
        const cells = await row.locator("td").allInnerTexts();
        if (cells[1] !== "fallback contact") failures.push(`${a.reason}: the fallback contact's call shows step ${JSON.stringify(cells[1])}`);
      }
      failures.push(...(await unreadable(page)));
      await shot(page, `unreached-${a.reason}`);
    }

    for (const b of server.badges.filter((b) => b.view === "alert")) {
      await show(page, `#/alert/${encodeURIComponent(b.id)}`, "alert");
      await page.locator(`#alert-head h2[data-alert="${b.id}"]`).waitFor();
      await explained(page, [b]);
    }

    step(`${server.label}: on a phone, 390 px wide`);
    await page.setViewportSize(PHONE);
    await show(page, "#/", "board");
    failures.push(...(await unreadable(page)));
    for (const a of server.alerts) {
      await show(page, `#/alert/${encodeURIComponent(a.id)}`, "alert");
      await page.locator(`#alert-head .banner.unreached[data-alert="${a.id}"]`).waitFor();
      failures.push(...(await unreadable(page)));
      await shot(page, `unreached-${a.reason}-390px`);
    }
    await context.close();
  }

  // Each badge's title (its tooltip) explains it.
  async function explained(page, badges) {
    for (const b of badges) {
      step(`the ${b.kind} badge explains itself on the ${b.view === "board" ? "board" : "alert page"}`);
      const where = b.view === "board" ? `#alerts tbody tr[data-alert="${b.id}"]` : "#unit-step";
      const title = await page.locator(`${where} .badge.${b.kind}`).getAttribute("title");
      if (!(title || "").includes(b.explains)) failures.push(`the ${b.kind} badge (${b.view}) of ${b.id} does not explain itself: ${JSON.stringify(title)}`);
    }
  }

  // The banner under `within` for alert `a`: its reason, and its sentence, next step and fix
  // exactly as the health API gives them (read again until they agree: "next" names a retry
  // time, which a retry in between moves on).
  async function agreesWithHealth(page, within, a) {
    const banner = page.locator(`${within} .banner.unreached[data-alert="${a.id}"]`);
    await banner.waitFor();
    const reason = await banner.getAttribute("data-reason");
    if (reason !== a.reason) failures.push(`banner of ${a.id} says ${reason}, expected ${a.reason}`);
    let last;
    const deadline = Date.now() + 10_000;
    for (;;) {
      const entry = await page.evaluate(async (id) => {
        const health = await (await fetch("/api/v1/health", { credentials: "same-origin" })).json();
        return health.unreached.find((u) => u.alert_id === id);
      }, a.id);
      const shown = {
        text: await banner.innerText(),
        next: await banner.locator(".banner-next").innerText(),
        fix: await banner.locator(".banner-fix").innerText(),
      };
      last = { entry, shown };
      if (entry && entry.reason === a.reason && entry.message.includes(a.message)
        && shown.text.startsWith("NOBODY IS BEING REACHED") && shown.text.includes(entry.message)
        && shown.next === `Next: ${entry.next}` && shown.fix === `Fix: ${entry.fix}`) return;
      if (Date.now() > deadline) break;
      await page.waitForTimeout(200);
    }
    failures.push(`the banner of ${a.reason} under ${within} does not say what /api/v1/health says:\n${JSON.stringify(last, null, 2)}`);
  }
});
console.log("unreached banners ok");

// Every unreached banner on the page: each of its lines at least MIN_CONTRAST against the red,
// and nothing wider than the banner or the window (a word cut off on a phone is a word lost).
async function unreadable(page) {
  return page.evaluate((min) => {
    const rgb = (c) => c.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number);
    const luminance = (c) => {
      const [r, g, b] = rgb(c).map((v) => {
        const s = v / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const contrast = (a, b) => {
      const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
      return (hi + 0.05) / (lo + 0.05);
    };
    const problems = [];
    const page = document.documentElement;
    if (page.scrollWidth > window.innerWidth + 1) problems.push(`the page scrolls sideways at ${window.innerWidth} px: it is ${page.scrollWidth} px wide`);
    for (const banner of document.querySelectorAll(".banner.unreached")) {
      const background = getComputedStyle(banner).backgroundColor;
      const where = `banner ${banner.dataset.reason} (${window.innerWidth} px)`;
      for (const part of [banner, ...banner.querySelectorAll("*")]) {
        const ratio = contrast(getComputedStyle(part).color, background);
        if (ratio < min) problems.push(`${where}: "${part.textContent.slice(0, 40)}" has contrast ${ratio.toFixed(2)}`);
        const box = part.getBoundingClientRect();
        if (part.scrollWidth > part.clientWidth + 1 || box.right > window.innerWidth + 1) {
          problems.push(`${where}: "${part.textContent.slice(0, 40)}" overflows (${Math.round(box.right)} px)`);
        }
      }
    }
    return problems;
  }, MIN_CONTRAST);
}
