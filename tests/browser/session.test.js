// Signing in and out, times in the browser's zone, and the dashboard with JavaScript off.
"use strict";

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { Server, until } = require("./lib/gantry");
const { launch, watchedContext, signIn } = require("./lib/browser");

let server;
let browser;

before(async () => {
  server = await Server.start({ name: "session" });
  // A host that never ran an agent still has a row (and a maintenance switch).
  await server.cli(["host", "enroll", "db-1", "--env", "prod"]);
  await server.recordChange({ kind: "note", summary: "Seeded for the session tests", service: "shop", env: "prod" });
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

/** Whitespace as one space (Intl puts U+202F before AM/PM, U+00A0 elsewhere). */
const spaces = (s) => s.replace(/[\s\u00a0\u202f]+/g, " ").trim();

test("signing in: a signed-out visitor is sent to the sign-in page; a wrong token is refused, the right one pasted lets them in", async () => {
  const context = await watchedContext(browser);
  const page = await context.newPage();
  await page.goto(`${server.url}/ui/changes?kind=note`);
  assert.equal(new URL(page.url()).pathname, "/ui/sign-in");
  assert.equal(new URL(page.url()).searchParams.get("next"), "/ui/changes?kind=note");
  // A wrong token answers the form again with 401 and says why.
  context.guard.expect(/\/ui\/sign-in$/, 401);
  await page.fill("#token", "not-a-token");
  const [refused] = await Promise.all([page.waitForResponse(/\/ui\/sign-in$/), page.click('button[type="submit"]')]);
  assert.equal(refused.status(), 401);
  assert.ok(await page.isVisible('p.notice[role="alert"]'));
  assert.equal(await page.inputValue("#token"), "", "the form does not echo the token");
  // The right one, pasted: back to where the visitor was going.
  await page.fill("#token", server.adminToken);
  await Promise.all([page.waitForURL(/\/ui\/changes\?kind=note$/), page.click('button[type="submit"]')]);
  assert.match(spaces(await page.textContent(".who")), /Signed in as admin/);
  assert.match(await page.textContent("#change-rows"), /Seeded for the session tests/);
  context.guard.check();
  await context.close();
});

test("signing out in one tab ends the other tab's live stream", async () => {
  const context = await watchedContext(browser);
  const watcher = await context.newPage();
  await signIn(watcher, server);
  const opened = watcher.waitForResponse((r) => r.url().includes("/ui/stream/changes"));
  await watcher.goto(`${server.url}/ui/changes`);
  assert.equal((await opened).status(), 200);
  const badge = watcher.locator("[data-live-status]");
  assert.equal((await badge.textContent()).trim(), "live");

  // After the sign-out, the watcher's stream is refused: 401 is what the test waits for.
  context.guard.expect(/\/ui\/stream\/changes/, 401);
  const other = await context.newPage();
  await other.goto(`${server.url}/`);
  await Promise.all([other.waitForURL(/\/ui\/sign-in$/), other.getByRole("button", { name: "Sign out" }).click()]);
  await other.close();

  // The server re-checks a stream's session every 15 s.
  const started = Date.now();
  // The stream is refused on reconnecting; the page asks whether it is still signed in
  // and, finding it is not, stops retrying and says so.
  await badge.filter({ hasText: /^signed out/ }).waitFor({ timeout: 25000 });
  assert.ok(await badge.evaluate((b) => b.classList.contains("down")));
  assert.ok(Date.now() - started < 25000);
  // Nothing recorded after the sign-out reaches the watcher.
  await server.recordChange({ kind: "note", summary: "After the sign-out" });
  await watcher.waitForTimeout(3000);
  assert.doesNotMatch(await watcher.textContent("#change-rows"), /After the sign-out/);
  // And a reload lands on the sign-in page.
  await watcher.reload();
  assert.equal(new URL(watcher.url()).pathname, "/ui/sign-in");
  context.guard.check();
  await context.close();
});

test("times are shown in the browser's zone, even one 45 minutes off the hour (Asia/Kathmandu)", async () => {
  const context = await watchedContext(browser, { timezoneId: "Asia/Kathmandu", locale: "en-US" });
  const page = await context.newPage();
  await signIn(page, server, server.adminToken, "/ui/changes");
  const time = page.locator("#change-rows time[data-rel]").first();
  await until("app.js to rewrite the time", async () => (await time.getAttribute("title")) !== null);
  const iso = await time.getAttribute("datetime");
  const shown = spaces(await time.textContent());
  // The same instant at +05:45, written out by hand.
  const local = new Date(Date.parse(iso) + (5 * 60 + 45) * 60 * 1000);
  const h = local.getUTCHours();
  const pad = (n) => String(n).padStart(2, "0");
  const clock = `${h % 12 || 12}:${pad(local.getUTCMinutes())}:${pad(local.getUTCSeconds())} ${h < 12 ? "AM" : "PM"}`;
  const month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][local.getUTCMonth()];
  const date = `${month} ${local.getUTCDate()}, ${local.getUTCFullYear()}`;
  assert.ok(shown.startsWith(`${date}, ${clock} (`), `"${shown}" should start with "${date}, ${clock} (" (${iso} at +05:45)`);
  assert.match(shown, /\((\d+ (second|minute)s? ago|now)\)$/);
  assert.equal(await time.getAttribute("title"), new Date(iso).toISOString());
  context.guard.check();
  await context.close();
});

test("with JavaScript off: sign in and put a host in maintenance and back", async () => {
  const context = await watchedContext(browser, { javaScriptEnabled: false });
  const page = await context.newPage();
  await signIn(page, server, server.adminToken, "/ui/hosts");
  const row = page.locator("#host-db-1");
  // The server's own text: UTC, since no script rewrites it.
  assert.doesNotMatch(await row.textContent(), /maintenance/);
  await Promise.all([
    page.waitForURL(/\/ui\/hosts\?environment=prod$/),
    row.getByRole("button", { name: "Maintenance for db-1" }).click(),
  ]);
  assert.match(await row.locator("td").nth(1).textContent(), /maintenance/);
  assert.equal((await server.api("GET", "/api/v1/hosts/db-1")).maintenance, true);
  await Promise.all([
    page.waitForURL(/\/ui\/hosts\?environment=prod$/),
    row.getByRole("button", { name: "End maintenance for db-1" }).click(),
  ]);
  assert.doesNotMatch(await row.textContent(), /maintenance/);
  assert.equal((await server.api("GET", "/api/v1/hosts/db-1")).maintenance, false);
  // Times stay as the server wrote them.
  await page.goto(`${server.url}/ui/changes`);
  assert.match(await page.locator("#change-rows time").first().textContent(), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
  context.guard.check();
  await context.close();
});

test("with JavaScript on, the maintenance switch swaps its host row in place (htmx, with the CSRF header)", async () => {
  const context = await watchedContext(browser);
  const page = await context.newPage();
  await signIn(page, server, server.adminToken, "/ui/hosts");
  let navigations = 0;
  page.on("domcontentloaded", () => (navigations += 1));
  const row = page.locator("#host-db-1");
  const [posted] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/ui/hosts/db-1/maintenance")),
    row.getByRole("button", { name: "Maintenance for db-1" }).click(),
  ]);
  assert.equal(posted.status(), 200);
  assert.ok(posted.request().headers()["x-csrf-token"], "htmx sends the CSRF header");
  await row.getByRole("button", { name: "End maintenance for db-1" }).waitFor();
  assert.equal((await server.api("GET", "/api/v1/hosts/db-1")).maintenance, true);
  await row.getByRole("button", { name: "End maintenance for db-1" }).click();
  await row.getByRole("button", { name: "Maintenance for db-1" }).waitFor();
  assert.equal((await server.api("GET", "/api/v1/hosts/db-1")).maintenance, false);
  assert.equal(navigations, 0, "the page must not reload");
  context.guard.check();
  await context.close();
});

test("an admin makes a token on the tokens page, signs in with it elsewhere, and revokes it", async () => {
  const admin = await watchedContext(browser);
  const page = await admin.newPage();
  await signIn(page, server, server.adminToken, "/ui/tokens");
  await page.fill("#t-name", "reader");
  await page.fill("#t-scopes", "read");
  const [created] = await Promise.all([page.waitForResponse(/\/ui\/tokens$/), page.getByRole("button", { name: "Create token" }).click()]);
  assert.equal(created.status(), 201);
  const secret = await page.inputValue("#new-secret");
  assert.ok(secret.length > 20);

  // The reader signs in in another browser: it reads, and the admin-only section is not offered.
  const other = await watchedContext(browser);
  const reader = await other.newPage();
  await signIn(reader, server, secret, "/ui/changes");
  assert.match(await reader.textContent(".who"), /reader/);
  assert.equal(await reader.locator("header nav a", { hasText: "Tokens" }).count(), 0);
  // The admin now sees one live session of reader, then revokes the token.
  await page.goto(`${server.url}/ui/tokens`);
  const row = page.locator("tbody tr", { has: page.locator("th", { hasText: /^reader$/ }) });
  assert.match(await row.locator("td").nth(3).textContent(), /^\s*1/);
  await Promise.all([page.waitForURL(/\/ui\/tokens$/), row.getByRole("button", { name: "Revoke reader" }).click()]);
  assert.equal(await page.locator("tbody th", { hasText: /^reader$/ }).count(), 0);
  // The reader's next page is the sign-in page, saying the session ended.
  await reader.goto(`${server.url}/ui/changes`);
  assert.equal(new URL(reader.url()).pathname, "/ui/sign-in");
  assert.match(await reader.textContent('p.notice[role="alert"]'), /session has ended/);
  admin.guard.check();
  other.guard.check();
  await other.close();
  await admin.close();
});

// The token name's pattern is a valid `v`-flag expression, so the browser checks it.
test("the tokens page refuses a bad token name before sending it", async () => {
  const context = await watchedContext(browser);
  const page = await context.newPage();
  await signIn(page, server, server.adminToken, "/ui/tokens");
  await page.fill("#t-name", "no spaces allowed");
  assert.equal(await page.$eval("#t-name", (i) => i.validity.patternMismatch), true);
  await page.fill("#t-name", "ci-deploy_2.x");
  assert.equal(await page.$eval("#t-name", (i) => i.validity.valid), true);
  context.guard.check();
  await context.close();
});
