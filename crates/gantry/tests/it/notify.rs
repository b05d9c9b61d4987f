//! Notifications through the real binary, to real peers on sockets: a critical monitor is
//! grouped into one notification per service and environment, sent to a signed JSON
//! webhook, a Slack-style webhook and an e-mail through an SMTP sink, while a webhook that
//! never answers is bounded and retried without holding up the others; a receiver for
//! another service gets nothing; a label silence holds its monitor's alert; the resolution
//! is notified; `gantry alert list` and `gantry silence …` show it all. And the bad input:
//! an SMTP server that refuses, a receiver that cannot be reached, a silence ending in the
//! past, a silence beyond the token's scope, a wrong `[notify]` section.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{token_file, Options, Server};
use crate::peers::{Smtp, SmtpSink, Webhook, WebhookSink};

const MONITORS: &str = r#"
[[threshold]]
name = "checkout-errors"
service = "shop"
environment = "prod"
target = "test.shop.errors"
window = "1m"
interval = "10s"
critical = 5.0
missing = "critical"

[[threshold]]
name = "quiet-errors"
service = "shop"
environment = "prod"
target = "test.shop.quiet"
window = "1m"
interval = "10s"
critical = 5.0
missing = "critical"
labels = { team = "quiet" }
"#;

fn start(config: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gantry.toml");
    std::fs::write(&path, config).unwrap();
    let server = Server::start_with(Options {
        extra_args: vec!["--config".into(), path.display().to_string()],
        ..Options::default()
    });
    (server, dir)
}

fn apply_monitors(server: &Server, dir: &std::path::Path) {
    server.ok(&["service", "create", "shop", "--envs", "prod"]);
    let file = dir.join("monitors.toml");
    std::fs::write(&file, MONITORS).unwrap();
    server.ok(&["monitor", "apply", file.to_str().unwrap()]);
}

fn deliveries(server: &Server) -> Vec<serde_json::Value> {
    let answer = server.http().get("/api/v1/alerts?limit=1000");
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn wait_delivery(
    server: &Server,
    what: &str,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = deliveries(server);
        if let Some(d) = all.iter().find(|d| want(d)) {
            return d.clone();
        }
        assert!(Instant::now() < deadline, "no delivery {what}: {all:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn graphite(server: &Server) -> TcpStream {
    let status = server.http().get("/api/v1/status").body;
    TcpStream::connect(status["listeners"]["graphite"].as_str().unwrap()).unwrap()
}

#[test]
fn alerts_are_grouped_signed_sent_silenced_and_resolved() {
    let hook = WebhookSink::start(Webhook::Answer);
    let stuck = WebhookSink::start(Webhook::Hang);
    let smtp = SmtpSink::start(Smtp::Accept);
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("hook.secret");
    std::fs::write(&secret, "s3cret-signing-key\n").unwrap();
    let config = format!(
        r#"
[notify]
group_wait_secs = 1
group_interval_secs = 2

[notify.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "Gantry <gantry@example.test>"

[[notify.webhooks]]
name = "hook"
url = "{hook_url}"
secret_file = "{secret}"

[[notify.webhooks]]
name = "chat"
url = "{chat_url}"
format = "slack"
environments = ["prod"]

[[notify.webhooks]]
name = "stuck"
url = "{stuck_url}"
timeout_secs = 1

[[notify.webhooks]]
name = "billing-only"
url = "{billing_url}"
services = ["billing"]

[[notify.emails]]
name = "oncall"
to = ["oncall@example.test"]
"#,
        smtp_port = smtp.port,
        hook_url = hook.url("/hook"),
        chat_url = hook.url("/chat"),
        stuck_url = stuck.url("/"),
        billing_url = hook.url("/billing"),
        secret = secret.display(),
    );
    let (server, dir) = start(&config);

    // A label silence before the monitor exists; it holds quiet-errors, not checkout-errors.
    let silence = server.ok(&[
        "silence",
        "add",
        "--label",
        "team=quiet",
        "--for",
        "1h",
        "--reason",
        "known noisy",
    ]);
    let silence = silence.trim().to_string();
    assert_eq!(silence.len(), 26, "only the id: {silence}");
    apply_monitors(&server, dir.path());

    // The JSON webhook: signed, with an idempotency id, naming the firing alert.
    let first = hook.wait_for("on /hook", |r| r.path == "/hook");
    let body = first.json();
    assert_eq!(body["status"], "firing", "{body}");
    assert_eq!(body["service"], "shop");
    assert_eq!(body["environment"], "prod");
    let firing: Vec<&str> = body["firing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["monitor"].as_str().unwrap())
        .collect();
    assert_eq!(
        firing,
        ["checkout-errors"],
        "the silenced one is held: {body}"
    );
    assert_eq!(body["firing"][0]["state"], "CRITICAL");
    assert_eq!(
        first.headers["idempotency-key"],
        body["id"].as_str().unwrap()
    );
    assert_eq!(
        first.headers["x-gantry-signature"],
        gantry_server::notify::message::signature(b"s3cret-signing-key", &first.body),
        "HMAC-SHA256 of the body under the key (its file's newline dropped)"
    );
    assert_eq!(first.headers["content-type"], "application/json");

    // The Slack-style body, and the e-mail.
    let chat = hook.wait_for("on /chat", |r| r.path == "/chat");
    let text = chat.json()["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("shop/prod: FIRING 1 (checkout-errors [(no series)] CRITICAL"),
        "{text}"
    );
    assert!(
        !chat.headers.contains_key("x-gantry-signature"),
        "no key, no signature"
    );
    let mail = smtp.wait_for("to oncall", |m| {
        m.to.iter().any(|t| t.contains("oncall@example.test"))
    });
    assert!(mail.from.contains("gantry@example.test"), "{mail:?}");
    assert!(
        mail.data.contains("Subject: [Gantry] shop/prod: FIRING 1"),
        "{}",
        mail.data
    );
    assert!(
        mail.data.contains("Message-ID: <shop.prod."),
        "{}",
        mail.data
    );
    assert!(
        mail.data
            .contains("- checkout-errors [(no series)] CRITICAL since"),
        "{}",
        mail.data
    );

    // The receiver that never answers is bounded and retried; the others were delivered.
    let stuck_delivery = wait_delivery(&server, "to stuck that failed once", |d| {
        d["receiver"] == "stuck" && d["attempts"].as_u64() >= Some(1)
    });
    assert_eq!(stuck_delivery["state"], "pending", "{stuck_delivery}");
    assert_eq!(stuck_delivery["last_error"], "no answer within 1 s");
    assert!(stuck_delivery["next_attempt_at"].is_string());
    for receiver in ["hook", "chat", "oncall"] {
        wait_delivery(&server, &format!("to {receiver}, delivered"), |d| {
            d["receiver"] == receiver && d["state"] == "delivered"
        });
    }
    assert!(
        deliveries(&server)
            .iter()
            .all(|d| d["receiver"] != "billing-only"),
        "a receiver of another service gets nothing"
    );

    // `gantry alert list` shows the open alerts and each delivery's state.
    let listed = server.ok(&["alert", "list"]);
    assert!(
        listed.contains("checkout-errors") && listed.contains("quiet-errors"),
        "{listed}"
    );
    assert!(
        listed.contains("delivered") && listed.contains("no answer within 1 s"),
        "{listed}"
    );
    let silences = server.ok(&["silence", "list"]);
    assert!(
        silences.contains(&silence)
            && silences.contains("label team=quiet")
            && silences.contains("active"),
        "{silences}"
    );

    // Data below the threshold: checkout-errors resolves, and that is notified.
    let mut tcp = graphite(&server);
    let deadline = Instant::now() + Duration::from_secs(90);
    let resolved = loop {
        let now = chrono::Utc::now().timestamp();
        let mut lines = String::new();
        for t in (now - 70..=now).step_by(10) {
            lines.push_str(&format!("test.shop.errors 1 {t}\n"));
        }
        tcp.write_all(lines.as_bytes()).unwrap();
        if let Some(r) = hook.received().into_iter().find(|r| {
            r.path == "/hook"
                && r.json()["resolved"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
        }) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no resolution: {:#?}",
            hook.received()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let body = resolved.json();
    assert_eq!(body["resolved"][0]["monitor"], "checkout-errors", "{body}");
    assert!(body["resolved"][0]["resolved_at"].is_string(), "{body}");
    assert_ne!(
        body["id"],
        first.json()["id"],
        "each notification has its own id"
    );

    // Expiring the silence lets quiet-errors' alert out.
    let expired = server.ok(&["silence", "expire", &silence]);
    assert_eq!(expired.trim(), format!("expired {silence}"));
    hook.wait_for("naming quiet-errors", |r| {
        r.path == "/hook"
            && r.json()["firing"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["monitor"] == "quiet-errors"))
    });
    assert!(
        server.ok(&["silence", "list"]).trim().lines().count() <= 1,
        "expired ones are not listed"
    );
    assert!(server.ok(&["silence", "list", "--all"]).contains("expired"));
}

#[test]
fn refusals_are_recorded_and_bad_holds_are_refused() {
    let smtp = SmtpSink::start(Smtp::RefuseRecipients);
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = format!(
        r#"
[notify]
group_wait_secs = 1
group_interval_secs = 2

[notify.smtp]
host = "127.0.0.1"
port = {port}
tls = "none"
from = "gantry@example.test"

[[notify.webhooks]]
name = "gone"
url = "http://127.0.0.1:{closed}/hook/T0SECRET"

[[notify.emails]]
name = "oncall"
to = ["oncall@example.test"]
"#,
        port = smtp.port
    );
    let (server, dir) = start(&config);
    apply_monitors(&server, dir.path());
    let refused = wait_delivery(&server, "to oncall that failed", |d| {
        d["receiver"] == "oncall" && d["attempts"].as_u64() >= Some(1)
    });
    assert_eq!(refused["state"], "pending");
    let error = refused["last_error"].as_str().unwrap();
    assert!(
        error.contains("127.0.0.1:") && error.contains("550"),
        "{error}"
    );
    let gone = wait_delivery(&server, "to gone that failed", |d| {
        d["receiver"] == "gone" && d["attempts"].as_u64() >= Some(1)
    });
    let error = gone["last_error"].as_str().unwrap();
    assert!(error.starts_with("cannot connect"), "{error}");
    assert!(!error.contains("T0SECRET"), "never the URL: {error}");
    let first =
        chrono::DateTime::parse_from_rfc3339(gone["last_attempt_at"].as_str().unwrap()).unwrap();
    let next =
        chrono::DateTime::parse_from_rfc3339(gone["next_attempt_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        (next - first).num_seconds(),
        10,
        "the first retry comes 10 s later"
    );
    assert!(
        !server.log_text().contains("T0SECRET"),
        "the webhook URL stays out of the log"
    );

    // Silences: in the past, beyond the token, unknown monitor.
    let out = server.cli(&[
        "silence",
        "add",
        "--service",
        "shop",
        "--until",
        "2020-01-01T00:00:00Z",
        "--reason",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not in the future"));
    let out = server.cli(&[
        "silence",
        "add",
        "--monitor",
        "nope",
        "--for",
        "1h",
        "--reason",
        "x",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no monitor named 'nope'"));
    let out = server.cli(&[
        "silence",
        "add",
        "--service",
        "shop",
        "--for",
        "1h",
        "--reason",
        " ",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("reason is empty"));
    let narrow = token_file(&server, "billing-deployer", "deploy:billing@prod");
    let out = server.cli_with_token_file(
        &narrow,
        &[
            "silence",
            "add",
            "--service",
            "shop",
            "--env",
            "prod",
            "--for",
            "1h",
            "--reason",
            "x",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lacks the scope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.cli_with_token_file(
        &narrow,
        &[
            "silence", "add", "--label", "team=x", "--for", "1h", "--reason", "x",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin"));
    // A maintenance window, and a wrong one.
    let id = server.ok(&[
        "silence",
        "maintenance",
        "--service",
        "shop",
        "--weekdays",
        "sat,sun",
        "--start",
        "02:00",
        "--duration",
        "3h",
        "--reason",
        "weekly database vacuum",
    ]);
    assert!(server.ok(&["silence", "list"]).contains(id.trim()));
    let out = server.cli(&[
        "silence",
        "maintenance",
        "--service",
        "shop",
        "--weekdays",
        "caturday",
        "--start",
        "02:00",
        "--duration",
        "3h",
        "--reason",
        "x",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("'caturday' is not a day"));
    assert_eq!(server.http().get("/readyz").status, 200, "still serving");
}

#[test]
fn a_wrong_notify_section_is_named() {
    let dir = tempfile::tempdir().unwrap();
    for (text, want) in [
        (
            "[[notify.webhooks]]\nname = \"x\"\nurl = \"ftp://example.test/\"\n",
            "notify.webhooks 'x': url must start with http:// or https://",
        ),
        (
            "[[notify.emails]]\nname = \"x\"\nto = [\"a@example.test\"]\n",
            "need a [notify.smtp] section",
        ),
        (
            "[[notify.webhooks]]\nname = \"x\"\nurl = \"http://127.0.0.1/\"\nsecret_file = \"/nonexistent/key\"\n",
            "notify.webhooks.secret_file: cannot read /nonexistent/key",
        ),
        (
            "[notify.smtp]\nhost = \"h\"\nfrom = \"not an address\"\n",
            "notify.smtp.from 'not an address' is not an address",
        ),
    ] {
        let config = dir.path().join("gantry.toml");
        std::fs::write(&config, text).unwrap();
        let out = crate::harness::bare_server()
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{want}: {err}");
    }
}

const TWO_SERVICES: &str = r#"
[[threshold]]
name = "shop-errors"
service = "shop"
environment = "prod"
target = "test.shop.errors"
window = "1m"
interval = "10s"
missing = "critical"
critical = 5.0

[[threshold]]
name = "billing-errors"
service = "billing"
environment = "prod"
target = "test.billing.errors"
window = "1m"
interval = "10s"
missing = "critical"
critical = 5.0
"#;

/// Two servers on one PostgreSQL share the monitor shards; when one dies, the other takes
/// its shards over with their stored states and alert groups: evaluation goes on, and what
/// was already said is not said again.
#[test]
fn a_second_server_continues_the_shards_of_one_that_died() {
    let hook = WebhookSink::start(Webhook::Answer);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.toml");
    std::fs::write(
        &config,
        format!(
            "[notify]\ngroup_wait_secs = 1\ngroup_interval_secs = 2\n\n[[notify.webhooks]]\nname = \"hook\"\nurl = \"{}\"\n",
            hook.url("/hook")
        ),
    )
    .unwrap();
    let url = crate::harness::postgres_url("notify_two_servers");
    let options = || Options {
        database_url: Some(url.clone()),
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Options::default()
    };
    let mut a = Server::start_with(options());
    let b = Server::start_with(options());
    a.ok(&["service", "create", "shop", "--envs", "prod"]);
    a.ok(&["service", "create", "billing", "--envs", "prod"]);
    let file = dir.path().join("monitors.toml");
    std::fs::write(&file, TWO_SERVICES).unwrap();
    a.ok(&["monitor", "apply", file.to_str().unwrap()]);
    for service in ["shop", "billing"] {
        hook.wait_for(&format!("for {service}"), |r| {
            r.json()["service"] == service
        });
    }
    let said = hook.received().len();
    assert_eq!(
        said,
        2,
        "one notification per group: {:#?}",
        hook.received()
    );

    // Whoever evaluated, kill A: B holds every shard within the lease's 15 s.
    a.kill();
    let http = crate::harness::Http::new(&b.url(), Some(a.admin_token()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = http.get("/api/v1/status").body;
    let mut tcp = TcpStream::connect(status["listeners"]["graphite"].as_str().unwrap()).unwrap();
    loop {
        // Billing recovers on B's store: only a server evaluating its shard sees it.
        let now = chrono::Utc::now().timestamp();
        let mut lines = String::new();
        for t in (now - 70..=now).step_by(10) {
            lines.push_str(&format!("test.billing.errors 1 {t}\n"));
        }
        tcp.write_all(lines.as_bytes()).unwrap();
        let m = http.get("/api/v1/monitors/billing-errors");
        if m.body["state"] == "OK" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never evaluated billing: {}",
            m.text
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let resolved = hook.wait_for("billing resolved", |r| {
        r.json()["service"] == "billing" && r.json()["status"] == "resolved"
    });
    assert!(
        resolved.json()["sequence"].as_u64() >= Some(2),
        "the group went on"
    );
    std::thread::sleep(Duration::from_secs(4));
    let shop: Vec<_> = hook
        .received()
        .into_iter()
        .filter(|r| r.json()["service"] == "shop")
        .collect();
    assert_eq!(
        shop.len(),
        1,
        "shop's firing alert is not said again: {shop:#?}"
    );
    drop(b);
}
