// What the browser flows share: Chromium started once, every page watched for script errors
// and failed requests, signing in, and one report of every failure at the end. The Rust
// tests in tests/api/browser.rs pass ALERTCALL_PASSWORD, SCREENSHOTS and CHROMIUM.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

export const TIMEOUT = 15_000;
export const password = process.env.ALERTCALL_PASSWORD;
export const shots = process.env.SCREENSHOTS;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!password || !shots) throw new Error("ALERTCALL_PASSWORD and SCREENSHOTS are required");
mkdirSync(shots, { recursive: true });

export const step = (what) => console.log(`- ${what}`);
export const shot = (page, name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

/**
 * Runs `flow({ browser, failures, watch })` in one Chromium, then exits 1 with every failure
 * (and a screenshot of the page being watched last) or 0. `watch(page)` records what goes
 * wrong on a page: script errors, console errors, any answer of 400 or more except the
 * sign-in form's.
 */
export async function run(flow) {
  const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  const failures = [];
  let last;
  const watch = (page) => {
    last = page;
    page.setDefaultTimeout(TIMEOUT);
    page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
    page.on("console", (m) => { if (m.type() === "error") failures.push(`console error: ${m.text()} at ${JSON.stringify(m.location())}`); });
    page.on("response", (r) => { if (r.status() >= 400 && !r.url().endsWith("/login")) failures.push(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`); });
    return page;
  };
  try {
    await flow({ browser, failures, watch });
  } catch (e) {
    failures.push(e.stack || String(e));
    if (last) {
      await shot(last, "failure").catch(() => {});
      failures.push(`page at failure: ${await last.locator("body").innerText().catch(() => "?")}`);
    }
  } finally {
    await browser.close();
  }
  if (failures.length) {
    console.error(failures.join("\n"));
    process.exit(1);
  }
}

/** Signs in as admin on the page, which is then on the board, live. */
export async function signIn(page, url) {
  await page.goto(`${url}/`);
  await page.waitForURL(/\/login$/);
  await page.fill("input[name=username]", "admin");
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  await page.waitForURL(`${url}/`);
  await page.waitForSelector("#live.on");
  await page.waitForFunction(() => document.body.dataset.loaded === "board");
}

/**
 * Shows another view of the single-page dashboard (`#/`, `#/alert/<id>`) and waits until it
 * loaded. (From one alert to another, wait for something of the new one as well: a refresh
 * of the old one may end in between.)
 */
export async function show(page, hash, loaded) {
  await page.evaluate((h) => { delete document.body.dataset.loaded; window.location.hash = h; }, hash);
  await page.waitForFunction((l) => document.body.dataset.loaded === l, loaded);
}
