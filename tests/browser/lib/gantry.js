// The real Gantry for the browser tests: `gantry server` on free ports with a temporary data
// directory, the CLI and the API against it, and real `gantry agent` processes, each with its
// own root directory (the approach of crates/gantry/tests/it/ship.rs, written in JS).
"use strict";

const assert = require("node:assert/strict");
const { spawn, execFile } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const readline = require("node:readline");

const REPO = path.resolve(__dirname, "..", "..", "..");
const BIN = process.env.GANTRY_BIN
  ? path.resolve(process.env.GANTRY_BIN)
  : path.join(REPO, "target", "debug", "gantry");

// Every process this run starts, so that none outlives it (even when a test throws).
const children = new Set();
process.on("exit", () => {
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `fn` until it returns a truthy value; fails after `secs` naming `what`. */
async function until(what, fn, { secs = 30, everyMs = 200 } = {}) {
  const deadline = Date.now() + secs * 1000;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not there after ${secs} s (last: ${last && (last.stack || JSON.stringify(last))})`);
    }
    await sleep(everyMs);
  }
}

/** An environment without the caller's Gantry settings. */
function cleanEnv(extra) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("GANTRY_")) delete env[k];
  delete env.XDG_CONFIG_HOME;
  return { ...env, ...extra };
}

function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `gantry-browser-${prefix}-`));
}

/** Ships faster than production: heartbeats every second, the scheduler every 100 ms. */
const SHIP_CONFIG = `[ship]
heartbeat_secs = 1
host_lost_after_secs = 6
tick_ms = 100
max_artifact_bytes = 4000000
`;

class Server {
  /** Starts `gantry server`: HTTP and Graphite plaintext on free ports (port 0: the server
   * picks and logs them), StatsD and pickle off. */
  static async start({ name = "server" } = {}) {
    assert.ok(fs.existsSync(BIN), `no gantry binary at ${BIN}: run \`cargo build -p gantry\` or set GANTRY_BIN`);
    const dir = tempDir(name);
    const dataDir = path.join(dir, "data");
    const config = path.join(dir, "gantry.toml");
    fs.writeFileSync(config, SHIP_CONFIG);
    const child = spawn(
      BIN,
      [
        "--log-format", "json", "server",
        "--listen", "127.0.0.1:0",
        "--graphite-listen", "127.0.0.1:0",
        "--statsd-listen", "off",
        "--pickle-listen", "off",
        "--data-dir", dataDir,
        "--config", config,
      ],
      { env: cleanEnv({ GANTRY_LOG: "info" }), stdio: ["ignore", "ignore", "pipe"] },
    );
    children.add(child);
    const log = [];
    const server = new Server(child, dir, dataDir, log);
    const ready = new Promise((resolve, reject) => {
      const found = {};
      readline.createInterface({ input: child.stderr }).on("line", (line) => {
        log.push(line);
        let v;
        try {
          v = JSON.parse(line);
        } catch {
          return;
        }
        if (v.message === "metrics listener ready" && v.protocol === "graphite") found.graphite = v.addr;
        if (v.message === "listening") found.http = v.addr;
        if (found.http && found.graphite) resolve(found);
      });
      child.on("exit", (code) => reject(new Error(`gantry server exited (${code}):\n${log.join("\n")}`)));
    });
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`gantry server did not start in 30 s:\n${log.join("\n")}`)), 30000);
    });
    const addrs = await Promise.race([ready, timeout]).finally(() => clearTimeout(timer));
    server.url = `http://${addrs.http}`;
    server.graphite = addrs.graphite;
    server.tokenFile = path.join(dataDir, "admin.token");
    server.adminToken = fs.readFileSync(server.tokenFile, "utf8").trim();
    return server;
  }

  constructor(child, dir, dataDir, log) {
    this.child = child;
    this.dir = dir;
    this.dataDir = dataDir;
    this.log = log;
    this.agents = [];
  }

  /** Runs the CLI against this server with the admin token; resolves to its stdout. */
  cli(args, { tokenFile = this.tokenFile, allowFail = false } = {}) {
    const home = tempDir("home");
    return new Promise((resolve, reject) => {
      execFile(
        BIN,
        args,
        {
          cwd: home,
          env: cleanEnv({ GANTRY_URL: this.url, GANTRY_TOKEN_FILE: tokenFile, HOME: home }),
          maxBuffer: 16 << 20,
        },
        (err, stdout, stderr) => {
          fs.rmSync(home, { recursive: true, force: true });
          if (err && !allowFail) {
            reject(new Error(`gantry ${args.join(" ")} failed (${err.code}): ${stderr}`));
          } else {
            resolve(allowFail ? { ok: !err, stdout, stderr } : stdout);
          }
        },
      );
    });
  }

  /** A JSON API call with the admin token. */
  async api(method, urlPath, body) {
    const res = await fetch(this.url + urlPath, {
      method,
      headers: {
        authorization: `Bearer ${this.adminToken}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${urlPath}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  /** Records a change through the CLI; resolves to its id. */
  async recordChange({ kind = "note", summary, service, env, startedAt }) {
    const args = ["change", "record", "--kind", kind, "--summary", summary];
    if (service) args.push("--service", service);
    if (env) args.push("--env", env);
    if (startedAt) args.push("--started-at", startedAt);
    return (await this.cli(args)).trim();
  }

  /** Sends Graphite plaintext lines (`name value timestamp`) to the metrics port. */
  sendGraphite(lines) {
    const [host, port] = this.graphite.split(/:(?=\d+$)/);
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port: Number(port) }, () => {
        socket.end(lines.map((l) => l + "\n").join(""));
      });
      socket.on("close", resolve);
      socket.on("error", reject);
    });
  }

  /** Registers `shop` with its pipeline (stage, prod) and applies its deploy config (a restart
   * hook and a health check from the build). */
  async applyShop() {
    await this.cli(["service", "create", "shop", "--envs", "stage,prod"]);
    const file = path.join(this.dir, "shop.toml");
    fs.writeFileSync(file, SHOP_CONFIG);
    return this.cli(["service", "apply", file]);
  }

  /** Pushes a build of shop at `version` (a tar.gz made here); resolves to its id. */
  async pushShop(version, { restartSecs = 1 } = {}) {
    const file = await shopArtifact(this.dir, version, restartSecs);
    const out = await this.cli(["build", "push", file, "--service", "shop", "--version", version]);
    return out.trim();
  }

  /** Enrolls a host and starts its agent. */
  async agent(name, env) {
    const token = (await this.cli(["host", "enroll", name, "--env", env, "--roles", "web"])).trim();
    const tokenFile = path.join(this.dir, `${name}.token`);
    fs.writeFileSync(tokenFile, token, { mode: 0o600 });
    const root = path.join(this.dir, `root-${name}`);
    fs.mkdirSync(root, { recursive: true });
    const child = spawn(
      BIN,
      ["agent", "--env", env, "--roles", "web", "--root", root, "--url", this.url, "--token-file", tokenFile],
      { env: cleanEnv({ GANTRY_LOG: "info" }), stdio: ["ignore", "ignore", "ignore"] },
    );
    children.add(child);
    this.agents.push(child);
    return { name, root, child };
  }

  /** Waits until every named host's agent has reported in. */
  async waitOnline(names) {
    await until(`hosts ${names.join(", ")} online`, async () => {
      const hosts = await this.api("GET", "/api/v1/hosts");
      return names.every((n) => hosts.some((h) => h.name === n && h.status === "online"));
    });
  }

  /** Polls a rollout until `done(rollout)` holds. */
  async waitRollout(id, done, secs = 60) {
    return until(`rollout ${id}`, async () => {
      const r = await this.api("GET", `/api/v1/rollouts/${id}`);
      return done(r) ? r : false;
    }, { secs });
  }

  /** Stops the agents and the server, and removes the temporary directory. */
  async stop() {
    const all = [...this.agents, this.child];
    await Promise.all(all.map((c) => stopChild(c)));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function stopChild(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      children.delete(child);
      return resolve();
    }
    const kill = setTimeout(() => child.kill("SIGKILL"), 10000);
    child.once("exit", () => {
      clearTimeout(kill);
      children.delete(child);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

const SHOP_CONFIG = `name = "shop"
roles = ["web"]
keep_releases = 3

[hooks]
restart = ["bin/restart"]

[health]
command = ["bin/health"]
timeout_secs = 5
retries = 3
interval_secs = 1
`;

/** A gzipped tar of a tiny release: its version, a restart hook that takes `restartSecs`
 * (so that a browser sees hosts move from step to step) and a health check. */
async function shopArtifact(dir, version, restartSecs) {
  const src = path.join(dir, `shop-${version}`);
  fs.mkdirSync(path.join(src, "bin"), { recursive: true });
  fs.writeFileSync(path.join(src, "VERSION"), version);
  fs.writeFileSync(
    path.join(src, "bin", "restart"),
    `#!/bin/sh\nsleep ${restartSecs}\necho "restarted shop $GANTRY_VERSION (was \${GANTRY_PREVIOUS_VERSION:-none})"\n`,
    { mode: 0o755 },
  );
  fs.writeFileSync(
    path.join(src, "bin", "health"),
    `#!/bin/sh\n[ "$(cat VERSION)" = "$GANTRY_VERSION" ] || { echo "runs $(cat VERSION)"; exit 1; }\necho "healthy $GANTRY_VERSION"\n`,
    { mode: 0o755 },
  );
  const file = path.join(dir, `shop-${version}.tar.gz`);
  await new Promise((resolve, reject) => {
    execFile("tar", ["-czf", file, "-C", src, "VERSION", "bin/restart", "bin/health"], (err, _o, stderr) =>
      err ? reject(new Error(`tar: ${stderr}`)) : resolve(),
    );
  });
  return file;
}

module.exports = { BIN, REPO, Server, until, sleep };
