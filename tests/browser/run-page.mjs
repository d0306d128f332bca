// Loads a live run page in Debian's chromium and follows a scenario, printing
// one line per milestone so the Rust test can act in between:
//   RED     the check tile is red (alarm)
//   GREEN   it turned green without a reload
//   APPROVED the target's approve button was clicked with the token and accepted
//   PAUSE   the pause button was clicked with the token and accepted
//   PAUSED  the run shows paused (still without a reload)
// Usage: node run-page.mjs URL TOKEN SCREENSHOT
import { chromium } from "playwright-core";

const [url, token, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const fail = async (msg) => {
  console.log(`FAIL ${msg}`);
  await browser.close();
  process.exit(1);
};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(url);
  // A marker that a reload would wipe out.
  await page.evaluate(() => { window.__noReload = true; });
  await page.waitForSelector('[data-check="gate"][data-status="alarm"]', { timeout: 20000 });
  console.log("RED");
  await page.waitForSelector('[data-check="gate"][data-status="ok"]', { timeout: 30000 });
  if (!(await page.evaluate(() => window.__noReload))) await fail("the page reloaded");
  console.log("GREEN");
  await page.fill("#token", token);
  await page.fill("#actor", "browser-test");
  await page.click('button[data-approve="go-ahead"][data-target="a"]', { timeout: 20000 });
  await page.waitForFunction(() => /approved/.test(document.querySelector("#control-result").textContent), null, { timeout: 20000 });
  console.log("APPROVED");
  await page.click('button[data-action="pause"]');
  await page.waitForFunction(() => /handed|paused/.test(document.querySelector("#control-result").textContent), null, { timeout: 20000 });
  console.log("PAUSE");
  await page.waitForFunction(() => document.querySelector("#run-state")?.textContent.trim() === "paused", null, { timeout: 30000 });
  if (!(await page.evaluate(() => window.__noReload))) await fail("the page reloaded");
  await page.screenshot({ path: shot, fullPage: true });
  console.log("PAUSED");
} catch (e) {
  await fail(String(e).split("\n")[0]);
}
await browser.close();
