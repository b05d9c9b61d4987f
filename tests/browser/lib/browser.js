// Headless Chromium (Debian's /usr/bin/chromium) through playwright-core, with a guard on
// every page: a page error, a console error, a Content-Security-Policy violation, a failed
// request or an answer >= 400 fails the test unless the test said it expects it. axe-core
// audits run in the page through the DevTools protocol, so the page's CSP stays on.
"use strict";

const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { chromium } = require("playwright-core");
const { REPO } = require("./gantry");

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
// Without the background-networking flags Chromium tries to reach Google's services, and
// this closed network refuses those connections.
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Where screenshots and axe reports go (never committed: target/ is ignored). */
const OUT = path.join(REPO, "target", "browser-tests");
fs.mkdirSync(OUT, { recursive: true });

function launch() {
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS });
}

/** The variants every page is audited and photographed in. */
const VARIANTS = {
  light: { colorScheme: "light", viewport: { width: 1280, height: 800 } },
  dark: { colorScheme: "dark", viewport: { width: 1280, height: 800 } },
  phone: {
    colorScheme: "light",
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  },
};

// Runs in every page before its own scripts: reports CSP violations to the test. (An init
// script and a binding come through the DevTools protocol, which the page's CSP does not
// govern.)
const CSP_LISTENER = `
document.addEventListener("securitypolicyviolation", function (e) {
  if (window.__gantryCsp) {
    window.__gantryCsp([e.violatedDirective, e.blockedURI, e.sourceFile + ":" + e.lineNumber, e.sample].join(" | "));
  }
}, true);
`;

/**
 * A browser context whose pages are watched. `guard.expect(pattern, status)` allows an answer
 * (and the console's "Failed to load resource" line Chromium writes for it); `guard.check()`
 * fails the test with every problem seen.
 */
async function watchedContext(browser, options = {}) {
  const context = await browser.newContext({ locale: "en-US", ...options });
  const guard = new Guard();
  if (options.javaScriptEnabled !== false) {
    await context.exposeBinding("__gantryCsp", ({ page }, text) => {
      guard.problem(page, `CSP violation: ${text}`);
    });
    await context.addInitScript({ content: CSP_LISTENER });
  }
  context.on("page", (page) => guard.watch(page));
  context.guard = guard;
  return context;
}

// Known dashboard bugs, reported and not yet fixed, allowed here in one place (remove an entry
// once its bug is fixed, so that it cannot come back). Answers ({ pattern, status }):
const KNOWN_BUGS = [];
// Console errors (RegExps of their text):
const KNOWN_CONSOLE_ERRORS = [];

class Guard {
  constructor() {
    this.problems = [];
    this.expected = [...KNOWN_BUGS]; // [{ pattern: RegExp, status: number }]
  }

  /** Allows answers with `status` to URLs matching `pattern` (a RegExp on the whole URL). */
  expect(pattern, status) {
    this.expected.push({ pattern, status });
  }

  isExpected(url, status) {
    return this.expected.some((e) => e.pattern.test(url) && (status === undefined || e.status === status));
  }

  problem(page, text) {
    let where = "";
    try {
      where = page.url();
    } catch {
      // page closed
    }
    this.problems.push(`${text}  [page ${where}]`);
  }

  watch(page) {
    page.on("pageerror", (err) => this.problem(page, `page error: ${err.stack || err}`));
    page.on("console", (msg) => {
      if (msg.type() !== "error" || KNOWN_CONSOLE_ERRORS.some((re) => re.test(msg.text()))) return;
      const url = msg.location() && msg.location().url;
      const m = /status of (\d+)/.exec(msg.text());
      if (/^Failed to load resource/.test(msg.text()) && url && this.isExpected(url, m ? Number(m[1]) : undefined)) {
        return;
      }
      this.problem(page, `console error: ${msg.text()} (${url || "?"})`);
    });
    page.on("requestfailed", (req) => {
      const failure = req.failure() ? req.failure().errorText : "failed";
      // An EventSource the browser closes because the page navigates away (or the tab is
      // closed) shows up as a failed request with net::ERR_ABORTED. That is the browser
      // ending a live stream, not an error: ignore exactly that, for the streams only.
      if (failure === "net::ERR_ABORTED" && new URL(req.url()).pathname.startsWith("/ui/stream/")) return;
      this.problem(page, `request failed: ${req.method()} ${req.url()}: ${failure}`);
    });
    page.on("response", (res) => {
      if (res.status() < 400 || this.isExpected(res.url(), res.status())) return;
      this.problem(page, `answer ${res.status()} to ${res.request().method()} ${res.url()}`);
    });
  }

  /** Fails with every problem seen so far (and forgets them). */
  check(when = "") {
    const problems = this.problems.splice(0);
    assert.deepEqual(problems, [], `browser problems${when ? " " + when : ""}:\n${problems.join("\n")}`);
  }
}

/** Signs in on the sign-in page by pasting `token`, and waits for the page it leads to. */
async function signIn(page, server, token = server.adminToken, next = "/") {
  await page.goto(`${server.url}/ui/sign-in?next=${encodeURIComponent(next)}`);
  await page.fill("#token", token);
  await Promise.all([
    page.waitForURL((u) => u.pathname === next.split("?")[0]),
    page.click('button[type="submit"]'),
  ]);
}

const AXE_SOURCE = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

// Every axe finding of every page, for the report at the end of a run.
const axeLog = [];

/**
 * Runs axe-core (WCAG 2 A and AA rules) in the page and fails on a serious or critical
 * violation. axe runs in the page's main world through CDP `Runtime.evaluate`: the page's
 * CSP forbids inline scripts and eval, and evaluation through the DevTools protocol is not
 * subject to it, so the page is audited exactly as served. Lesser findings are kept in
 * target/browser-tests/axe.json.
 */
async function audit(page, name) {
  const cdp = await page.context().newCDPSession(page);
  try {
    const loaded = await cdp.send("Runtime.evaluate", { expression: AXE_SOURCE + "\n;typeof axe" });
    assert.equal(loaded.result.value, "object", `axe-core did not load on ${name}: ${JSON.stringify(loaded.exceptionDetails)}`);
    const run = await cdp.send("Runtime.evaluate", {
      expression: `axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa"] }, resultTypes: ["violations"] })
        .then(function (r) { return r.violations.map(function (v) {
          return { id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(function (n) {
            return { target: n.target.join(" "), summary: n.failureSummary }; }) }; }); })`,
      awaitPromise: true,
      returnByValue: true,
    });
    assert.ok(!run.exceptionDetails, `axe failed on ${name}: ${JSON.stringify(run.exceptionDetails)}`);
    const violations = run.result.value;
    for (const v of violations) axeLog.push({ page: name, ...v });
    const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    assert.deepEqual(
      bad.map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map((n) => n.target).join(", ")}`),
      [],
      `axe found serious or critical violations on ${name}:\n${JSON.stringify(bad, null, 2)}`,
    );
  } finally {
    await cdp.detach().catch(() => {});
  }
}

/** Writes the axe findings of this test file to target/browser-tests/axe-<file>.json. */
function saveAxeLog(file) {
  fs.writeFileSync(path.join(OUT, `axe-${file}.json`), JSON.stringify(axeLog, null, 2));
}

async function screenshot(page, name) {
  await page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: true });
}

/** How many documents the tab loads from now on (history.replaceState is no load). */
function countNavigations(p) {
  const counter = { n: 0 };
  p.on("domcontentloaded", () => {
    counter.n += 1;
  });
  return counter;
}

module.exports = { launch, watchedContext, signIn, countNavigations, audit, saveAxeLog, screenshot, VARIANTS, OUT };
