// Shipping through the dashboard to real agents: a deploy started from the service page,
// watched live on the rollout page; an abort from the rollout page; a rollback from the
// service page through its confirmation.
"use strict";

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { Server } = require("./lib/gantry");
const { launch, watchedContext, signIn, countNavigations } = require("./lib/browser");

const HOSTS = ["web-1", "web-2", "web-3"];
let server;
let browser;
let context;
let page;
const builds = {};
const rollouts = {};

before(async () => {
  server = await Server.start({ name: "ship" });
  await server.applyShop();
  for (const h of HOSTS) await server.agent(h, "prod");
  await server.waitOnline(HOSTS);
  builds["1.0"] = await server.pushShop("1.0", { restartSecs: 0 });
  await server.cli(["deploy", "shop", "1.0", "--env", "prod", "--waves", "100%", "--bake", "0s", "--wait"]);
  // 2.0 restarts slowly, so that a browser sees each host go from step to step.
  builds["2.0"] = await server.pushShop("2.0", { restartSecs: 3 });
  builds["3.0"] = await server.pushShop("3.0", { restartSecs: 0 });
  browser = await launch();
  context = await watchedContext(browser);
  page = await context.newPage();
  await signIn(page, server);
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

/** The rollout page's host rows: host name -> state word. */
async function hostStates(p) {
  return p.$$eval("#task-rows tr", (rows) =>
    Object.fromEntries(rows.map((r) => [r.querySelector("th").textContent.trim(), r.querySelector(".badge").textContent.trim()])),
  );
}

function summaryState(p) {
  return p.textContent("#rollout-summary .big .badge").then((t) => t.trim());
}

/** The pipeline stage of `env` on the service page. */
function stage(p, env) {
  return p.locator("ol.pipeline li.stage").filter({ has: p.locator("h3", { hasText: new RegExp(`^${env}$`) }) });
}

test("a deploy started from the service page progresses live on the rollout page", async () => {
  await page.goto(`${server.url}/ui/services/shop`);
  const prod = stage(page, "prod");
  await prod.getByLabel("Build to deploy to prod").selectOption({ label: "2.0" });
  await Promise.all([page.waitForURL(/\/ui\/services\/shop\/confirm\?/), prod.getByRole("button", { name: "Deploy…" }).click()]);
  const confirm = new URL(page.url());
  assert.equal(confirm.searchParams.get("action"), "deploy");
  assert.equal(confirm.searchParams.get("build"), builds["2.0"]);
  assert.match(await page.textContent("h1"), /Deploy shop in prod\?/);
  assert.match(await page.textContent("dl.facts"), /Now running\s*1\.0/);
  // The service page offers the default waves (1,10%,50%,100%, bake 60 s); the confirmation
  // carries any in its URL: two quick waves here.
  confirm.searchParams.set("waves", "1,100%");
  confirm.searchParams.set("bake", "2s");
  await page.goto(confirm.toString());
  assert.match(await page.textContent("dl.facts"), /1,100%, bake 2 s/);
  assert.match(await page.textContent("ol.waves-list"), /Wave 1 \(1\)[\s\S]*Wave 2 \(2\)/);

  await Promise.all([
    page.waitForURL(/\/ui\/rollouts\/[0-9A-Z]{26}$/),
    page.getByRole("button", { name: "Deploy 2.0 to prod" }).click(),
  ]);
  const navigations = countNavigations(page);
  await page.waitForSelector("[data-live-status]");
  const seen = Object.fromEntries(HOSTS.map((h) => [h, new Set()]));
  const deadline = Date.now() + 60000;
  let state;
  for (;;) {
    const states = await hostStates(page);
    for (const [h, s] of Object.entries(states)) seen[h].add(s);
    state = await summaryState(page);
    if (state !== "running" && state !== "pending") break;
    assert.ok(Date.now() < deadline, `rollout still ${state} after 60 s: ${JSON.stringify(states)}`);
    await page.waitForTimeout(100);
  }
  assert.equal(state, "succeeded");
  // The stream's `end` after the last update: the page stops following and says so.
  await page.waitForFunction(() => document.querySelector("[data-live-status]").textContent === "finished", null, {
    timeout: 10000,
  });
  assert.equal(navigations.n, 0, "the rollout page must not reload: rows change through its stream");
  assert.deepEqual(await hostStates(page), Object.fromEntries(HOSTS.map((h) => [h, "succeeded"])));
  for (const h of HOSTS) {
    assert.ok(seen[h].size > 1, `${h} was only ever seen ${[...seen[h]]}: the page did not follow it`);
  }
  // Rows that came through the stream had their times rewritten too.
  const untouched = await page.$$eval("#task-rows time[data-rel]", (ts) => ts.filter((t) => !t.title).length);
  assert.equal(untouched, 0);
  assert.match(await page.textContent("#rollout-summary"), /wave 2 of 2/);
  rollouts.deployed = page.url().split("/").pop();
  context.guard.check();
});

// A finished rollout's page does not open its stream at all (a stream that ended would
// otherwise be reopened by the browser for as long as the page stays open).
test("a finished rollout's page stops following its stream", async () => {
  const opened = [];
  const listener = (r) => r.url().includes("/ui/stream/rollouts/") && opened.push(r.url());
  page.on("request", listener);
  await page.goto(`${server.url}/ui/rollouts/${rollouts.deployed}`);
  await page.waitForTimeout(8000);
  page.off("request", listener);
  assert.ok(opened.length <= 1, `the stream was opened ${opened.length} times in 8 s`);
  context.guard.check();
});

test("a rollout is aborted from its page", async () => {
  const out = await server.cli(["deploy", "shop", "3.0", "--env", "prod", "--waves", "1,100%", "--bake", "10m"]);
  const id = out.split("\n")[0].trim();
  await page.goto(`${server.url}/ui/rollouts/${id}`);
  // Wave 1 is done and the rollout bakes: the page says so once the stream tells it.
  await page.waitForSelector("#rollout-summary :text('Baking until')", { timeout: 30000 });
  await Promise.all([
    page.waitForURL(`${server.url}/ui/rollouts/${id}`),
    page.locator("#rollout-summary").getByRole("button", { name: "Abort" }).click(),
  ]);
  await page.waitForFunction(
    () => document.querySelector("#rollout-summary .big .badge").textContent.trim() === "aborted",
    null,
    { timeout: 30000 },
  );
  assert.match(await page.textContent("#rollout-summary"), /Aborted by admin/);
  // Controls are gone once the rollout is final.
  assert.equal(await page.locator("#rollout-summary").getByRole("button", { name: "Abort" }).count(), 0);
  const r = await server.api("GET", `/api/v1/rollouts/${id}`);
  assert.equal(r.state, "aborted");
  context.guard.check();
});

test("a rollback from the service page goes through its confirmation", async () => {
  await page.goto(`${server.url}/ui/services/shop`);
  await Promise.all([
    page.waitForURL(/\/ui\/services\/shop\/confirm\?action=rollback&environment=prod$/),
    stage(page, "prod").getByRole("link", { name: "Roll back…" }).click(),
  ]);
  assert.match(await page.textContent("h1"), /Roll back shop in prod\?/);
  const facts = await page.textContent("dl.facts");
  const target = /Will run\s*(\S+)/.exec(facts)[1];
  assert.ok(["1.0", "2.0"].includes(target), facts);
  await Promise.all([
    page.waitForURL(/\/ui\/rollouts\/[0-9A-Z]{26}$/),
    page.getByRole("button", { name: `Roll back ${target} to prod` }).click(),
  ]);
  assert.match(await page.textContent("h1"), new RegExp(`rollback shop ${target.replace(".", "\\.")} to prod`));
  await page.waitForFunction(
    () => document.querySelector("#rollout-summary .big .badge").textContent.trim() === "succeeded",
    null,
    { timeout: 60000 },
  );
  const id = page.url().split("/").pop();
  const r = await server.api("GET", `/api/v1/rollouts/${id}`);
  assert.equal(r.kind, "rollback");
  assert.equal(r.state, "succeeded");
  // The service page shows prod on the build it went back to.
  await page.goto(`${server.url}/ui/services/shop`);
  assert.equal((await stage(page, "prod").locator("p.version").textContent()).trim(), target);
  context.guard.check();
});
