// Every page of the dashboard, in light and dark and at phone size: no serious or critical
// axe-core finding (WCAG 2 A and AA), no browser problem, and a screenshot of each in
// target/browser-tests/.
"use strict";

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { Server, until } = require("./lib/gantry");
const { launch, watchedContext, signIn, audit, saveAxeLog, screenshot, VARIANTS } = require("./lib/browser");

let server;
let browser;
const ids = {};

before(async () => {
  server = await Server.start({ name: "pages" });
  await server.applyShop();
  await server.agent("web-1", "prod");
  await server.waitOnline(["web-1"]);
  // Two deploys, so that a rollback has somewhere to go back to.
  for (const version of ["1.0", "2.0"]) {
    await server.pushShop(version, { restartSecs: 0 });
    const out = await server.cli(["deploy", "shop", version, "--env", "prod", "--waves", "100%", "--bake", "0s", "--wait"]);
    ids.rollout = out.split("\n")[0].trim();
  }
  // A few points of a metric, and a change inside their range.
  const now = Math.floor(Date.now() / 1000);
  await server.sendGraphite([60, 40, 20, 0].map((ago, i) => `shop.requests ${10 + i * 5} ${now - ago}`));
  ids.change = await server.recordChange({
    kind: "config",
    summary: "Raise shop's pool to 40",
    service: "shop",
    env: "prod",
    startedAt: "30s",
  });
  await until("the metric to be stored", async () => {
    const series = await server.api("GET", "/render?target=shop.requests&from=-10min&format=json");
    return series.length && series[0].datapoints.some(([v]) => v !== null);
  });
  browser = await launch();
});

after(async () => {
  saveAxeLog("pages");
  if (browser) await browser.close();
  if (server) await server.stop();
});

/** Each page: its path, and what shows it is drawn (beyond the `load` event). */
function pages() {
  return [
    { name: "overview", path: "/", ready: "#overview-table" },
    { name: "service", path: "/ui/services/shop", ready: "ol.pipeline" },
    { name: "confirm-rollback", path: "/ui/services/shop/confirm?action=rollback&environment=prod", ready: "form.confirm" },
    { name: "rollout", path: `/ui/rollouts/${ids.rollout}`, ready: "#task-rows tr" },
    { name: "changes", path: "/ui/changes", ready: "#change-rows tr" },
    { name: "change", path: `/ui/changes/${ids.change}`, ready: "dl.facts" },
    { name: "hosts", path: "/ui/hosts", ready: "#host-web-1" },
    {
      name: "metrics",
      path: "/ui/metrics?target=shop.requests&from=-1h",
      ready: ".plot canvas",
      all: [".plot canvas", "figure.graph ul.markers"],
    },
    { name: "tokens", path: "/ui/tokens", ready: "form.stack" },
    // The later sections, empty on this server.
    { name: "flags", path: "/ui/flags", ready: "main h1" },
    { name: "migrations", path: "/ui/migrations", ready: "main h1" },
    { name: "incidents", path: "/ui/incidents", ready: "main h1" },
    { name: "monitors", path: "/ui/monitors", ready: "main h1" },
    { name: "report", path: "/ui/report", ready: "main h1" },
    { name: "not-found", path: "/ui/no-such-page", ready: "p.error", status: 404 },
  ];
}

for (const [variant, options] of Object.entries(VARIANTS)) {
  test(`every page, ${variant}`, async () => {
    const context = await watchedContext(browser, options);
    const page = await context.newPage();
    try {
      await page.goto(`${server.url}/ui/sign-in`);
      await page.waitForSelector("#token");
      await audit(page, `sign-in (${variant})`);
      await screenshot(page, `sign-in-${variant}`);
      await signIn(page, server);
      for (const p of pages()) {
        if (p.status) context.guard.expect(new RegExp(`${p.path}$`), p.status);
        const res = await page.goto(server.url + p.path);
        assert.equal(res.status(), p.status || 200, `${p.name}: status`);
        for (const sel of p.all || [p.ready]) await page.waitForSelector(sel);
        // app.js has rewritten the times into the browser's zone.
        await page.waitForFunction(() =>
          Array.from(document.querySelectorAll("time[data-rel]")).every((t) => t.title),
        );
        await audit(page, `${p.name} (${variant})`);
        await screenshot(page, `${p.name}-${variant}`);
        context.guard.check(`on ${p.name} (${variant})`);
      }
    } finally {
      await context.close();
    }
    context.guard.check(`(${variant})`);
  });
}
