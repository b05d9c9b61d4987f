// Live pages and graphs: a change recorded while the changes page (or the overview) is open
// shows up without a reload; a metric drawn on the metrics page with a marker at a change.
"use strict";

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { Server, until } = require("./lib/gantry");
const { launch, watchedContext, signIn, countNavigations } = require("./lib/browser");

let server;
let browser;
let context;
let page;

before(async () => {
  server = await Server.start({ name: "live" });
  await server.cli(["service", "create", "shop", "--envs", "stage,prod"]);
  browser = await launch();
  context = await watchedContext(browser);
  page = await context.newPage();
  await signIn(page, server);
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

/** Opens a live page and waits until its stream answered. */
async function openLive(path, stream) {
  const opened = page.waitForResponse((r) => r.url().includes(stream));
  await page.goto(server.url + path);
  assert.equal((await opened).status(), 200);
  return countNavigations(page);
}

test("a change recorded while the changes page is open appears at its top, live", async () => {
  const navigations = await openLive("/ui/changes?service=shop", "/ui/stream/changes");
  const none = page.getByText("No change matches these filters.");
  assert.ok(await none.isVisible());
  // One through the CLI, one through the API; one of another service, which the filter keeps out.
  const first = await server.recordChange({ kind: "deploy", summary: "Deploy shop 1.4.0", service: "shop", env: "prod" });
  await page.waitForSelector(`#change-${first}`);
  await server.recordChange({ kind: "note", summary: "Cart note", service: "cart" });
  const second = (
    await server.api("POST", "/api/v1/changes", {
      kind: "flag",
      summary: "Turn on new-checkout for 10 %",
      service: "shop",
      environment: "prod",
    })
  ).id;
  await page.waitForSelector(`#change-${second}`);
  const rows = await page.$$eval("#change-rows tr", (trs) => trs.map((tr) => tr.id));
  assert.deepEqual(rows, [`change-${second}`, `change-${first}`], "newest first, and the cart change filtered out");
  assert.match(await page.textContent(`#change-${second} td.summary a`), /Turn on new-checkout for 10 %/);
  assert.equal(await page.getAttribute(`#change-${second} td.summary a`, "href"), `/ui/changes/${second}`);
  // Live rows have their times in the browser's zone too.
  assert.ok(await page.getAttribute(`#change-${second} time[data-rel]`, "title"));
  assert.equal(navigations.n, 0, "the page must not reload");
  assert.ok(await none.isHidden(), "with rows on the page, it no longer says none matches");
  // The live badge says the stream is up.
  assert.equal((await page.textContent("[data-live-status]")).trim(), "live");
  context.guard.check();
});

test("the overview follows the change log: a service first seen in a change appears", async () => {
  const navigations = await openLive("/", "/ui/stream/changes");
  assert.equal(await page.locator("#overview-table th a", { hasText: "billing" }).count(), 0);
  await server.recordChange({ kind: "deploy", summary: "Deploy billing 7", service: "billing", env: "prod" });
  await page.locator("#overview-table th a", { hasText: "billing" }).waitFor({ timeout: 15000 });
  assert.equal(navigations.n, 0, "the page must not reload");
  context.guard.check();
});

test("the metrics page draws a target with a marker at a change", async () => {
  const now = Math.floor(Date.now() / 1000);
  // Half an hour of a metric, a point a minute, and a change in the middle of it.
  const lines = [];
  for (let i = 30; i >= 0; i--) lines.push(`shop.checkout.latency ${100 + (i % 7) * 10} ${now - i * 60}`);
  await server.sendGraphite(lines);
  const change = await server.recordChange({
    kind: "config",
    summary: "Raise the checkout pool to 40",
    service: "shop",
    env: "prod",
    startedAt: "15m",
  });
  await until("the points to be stored", async () => {
    const series = await server.api("GET", "/render?target=shop.checkout.latency&from=-1h&format=json");
    return series.length && series[0].datapoints.filter(([v]) => v !== null).length >= 25;
  });

  await page.goto(`${server.url}/ui/metrics`);
  await page.fill("#target", "shop.checkout.latency");
  await page.selectOption('select[name="from"]', "-1h");
  await Promise.all([page.waitForURL(/\/ui\/metrics\?target=shop\.checkout\.latency&from=-1h/), page.click('button:text("Draw")')]);
  const canvas = page.locator("figure.graph .plot canvas");
  await canvas.waitFor();
  const box = await canvas.boundingBox();
  assert.ok(box.width >= 280 && box.height >= 100, `canvas is ${JSON.stringify(box)}`);
  // The list of changes drawn names this one and links to it.
  const marker = page.locator("figure.graph ul.markers li", { hasText: "Raise the checkout pool to 40" });
  await marker.waitFor();
  assert.equal(await marker.locator("a").getAttribute("href"), `/ui/changes/${change}`);
  assert.match(await marker.textContent(), /config: Raise the checkout pool to 40 \(admin\)/);
  assert.ok(await marker.locator("time[data-rel]").getAttribute("title"));
  // The summary table the server wrote (readable without JavaScript).
  assert.match(await page.textContent("table.grid"), /shop\.checkout\.latency/);
  assert.match(await page.textContent("figcaption"), /^1 series, \d+ changes drawn$/);

  // Pointing at the change's line names it.
  const at = Date.parse(await marker.locator("time").getAttribute("datetime")) / 1000;
  const point = await page.$eval(
    "figure.graph .plot",
    (el, at) => {
      const u = el._plot;
      const over = u.over.getBoundingClientRect();
      return { x: over.left + u.valToPos(at, "x"), y: over.top + over.height / 2 };
    },
    at,
  );
  await page.mouse.move(point.x, point.y);
  await page.locator("figure.graph .graph-tip.shown", { hasText: "config: Raise the checkout pool to 40 (admin)" }).waitFor();
  // Dragging across the graph puts the range in the URL (without loading the page again),
  // even when the drag ends on a change's line (a click there would open the change).
  const navigations = countNavigations(page);
  const over = await page.locator("figure.graph .u-over").boundingBox();
  await page.mouse.move(over.x + over.width * 0.25, point.y);
  await page.mouse.down();
  await page.mouse.move(point.x, point.y, { steps: 5 });
  await page.mouse.up();
  await page.waitForTimeout(500);
  const zoomed = new URL(page.url()).searchParams;
  const [from, untilTime] = [Number(zoomed.get("from")), Number(zoomed.get("until"))];
  assert.ok(from > now - 3600 && from < untilTime && untilTime <= now + 60, `zoomed to ${from}..${untilTime}`);
  assert.equal(navigations.n, 0);
  context.guard.check();
});
