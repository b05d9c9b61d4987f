//! A small harness: start a real server, run the real CLI against it, speak HTTP to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_gantry");

/// A running `gantry server`. Killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
    pub scheme: &'static str,
    pub log: Arc<Mutex<Vec<String>>>,
    _temp: Option<tempfile::TempDir>,
}

#[derive(Default)]
pub struct Options {
    /// Reuse this data directory (e.g. after a restart).
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub extra_args: Vec<String>,
    pub scheme: Option<&'static str>,
    /// Environment variables the server gets.
    pub env: Vec<(String, String)>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Server {
        let (temp, data_dir) = match options.data_dir {
            Some(dir) => (None, dir),
            None => {
                let temp = tempfile::tempdir().expect("temp dir");
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        let mut command = Command::new(BIN);
        command
            .args(["--log-format", "json", "server"])
            .args(if options.extra_args.iter().any(|a| a == "--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"][..]
            })
            // Every listener on a free port, so tests run side by side.
            .args([
                "--statsd-listen",
                "127.0.0.1:0",
                "--graphite-listen",
                "127.0.0.1:0",
            ])
            .args(["--pickle-listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .args(&options.extra_args)
            .env_remove("GANTRY_DATABASE_URL")
            .env_remove("GANTRY_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(url) = &options.database_url {
            command.args(["--database-url", url]);
        }
        command.envs(options.env.iter().map(|(k, v)| (k, v)));
        let mut child = command.spawn().expect("start gantry server");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log_writer = log.clone();
        if let Some(url) = &options.database_url {
            crate::logs_check::database_url(url);
        }
        let (mut log_file, _) = crate::logs_check::file("server");
        std::thread::spawn(move || {
            use std::io::Write as _;
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(log_file, "{line}");
                if !sent {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if v["message"] == "listening" {
                            let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_string());
                            sent = true;
                        }
                    }
                }
                log_writer.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Server {
            child,
            addr,
            data_dir,
            scheme: options.scheme.unwrap_or("http"),
            log,
            _temp: temp,
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn admin_token(&self) -> String {
        let token = std::fs::read_to_string(self.data_dir.join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_string();
        crate::logs_check::secret(&token);
        token
    }

    /// Runs the CLI against this server with the admin token file.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_token_file(&self.data_dir.join("admin.token"), args)
    }

    pub fn cli_with_token_file(&self, token_file: &Path, args: &[&str]) -> Output {
        cli(&self.url(), Some(token_file), args)
    }

    /// The CLI's stdout, asserting success.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "gantry {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    pub fn http(&self) -> Http {
        Http::new(&self.url(), Some(self.admin_token()))
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        wait_exit(&mut self.child, Duration::from_secs(20))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    /// Stops the server, then checks that no log of this test holds a secret.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(token) = std::fs::read_to_string(self.data_dir.join("admin.token")) {
            crate::logs_check::secret(&token);
        }
        // The log thread writes the last lines once the pipe closes.
        std::thread::sleep(Duration::from_millis(20));
        crate::logs_check::check_all();
    }
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `gantry server` with every metrics listener off, for tests that only start it to see
/// it refuse (add `--listen`, `--data-dir` and the rest).
pub fn bare_server() -> Command {
    let mut command = Command::new(BIN);
    command.args([
        "server",
        "--statsd-listen",
        "off",
        "--graphite-listen",
        "off",
        "--pickle-listen",
        "off",
    ]);
    command
}

/// Runs the CLI with a clean environment: no user config, no inherited Gantry settings.
pub fn cli(url: &str, token_file: Option<&Path>, args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("home");
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("GANTRY_URL", url)
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("GANTRY_TOKEN")
        .env_remove("GANTRY_TOKEN_FILE")
        .env_remove("GANTRY_DATA_DIR")
        .current_dir(home.path());
    if let Some(file) = token_file {
        command.env("GANTRY_TOKEN_FILE", file);
        if let Ok(token) = std::fs::read_to_string(file) {
            crate::logs_check::secret(&token);
        }
    }
    let output = command.output().expect("run gantry");
    // The CLI's stderr is its log; stdout is its answer (a token it created is shown there).
    let (mut log, path) = crate::logs_check::file("cli");
    let _ = std::io::Write::write_all(&mut log, &output.stderr);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let leaks = crate::logs_check::leaks(&stderr);
    assert!(
        leaks.is_empty() || std::thread::panicking(),
        "gantry {args:?} wrote secrets to stderr ({}): {leaks:?}",
        path.display()
    );
    output
}

/// A blocking HTTP client with a token.
pub struct Http {
    pub base: String,
    pub token: Option<String>,
    pub client: reqwest::blocking::Client,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
    pub text: String,
}

impl Http {
    pub fn new(base: &str, token: Option<String>) -> Http {
        if let Some(token) = &token {
            crate::logs_check::secret(token);
        }
        Http {
            base: base.to_string(),
            token,
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub fn with_token(&self, token: Option<&str>) -> Http {
        Http::new(&self.base, token.map(str::to_string))
    }

    pub fn send(&self, method: reqwest::Method, path: &str, body: Option<RawBody>) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        match body {
            Some(RawBody::Json(v)) => request = request.json(&v),
            Some(RawBody::Text(t)) => {
                request = request.header("content-type", "application/json").body(t)
            }
            None => {}
        }
        let response = request.send().expect("HTTP request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None)
    }

    pub fn post(&self, path: &str, body: serde_json::Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(RawBody::Json(body)))
    }

    pub fn patch(&self, path: &str, body: serde_json::Value) -> Reply {
        self.send(reqwest::Method::PATCH, path, Some(RawBody::Json(body)))
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.send(reqwest::Method::DELETE, path, None)
    }
}

pub enum RawBody {
    Json(serde_json::Value),
    Text(String),
}

/// Creates a token through the CLI and writes it to a file; returns the file.
pub fn token_file(server: &Server, name: &str, scopes: &str) -> PathBuf {
    let secret = server.ok(&["token", "create", name, "--scopes", scopes]);
    crate::logs_check::secret(&secret);
    let path = server.data_dir.join(format!("{name}.token"));
    std::fs::write(&path, secret.trim()).unwrap();
    path
}

/// A fresh PostgreSQL schema's URL, for servers that share one database.
pub fn postgres_url(label: &str) -> String {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(gantry_store::testing::fresh_postgres_url(label))
}

pub fn record(server: &Server, service: &str, env: &str, summary: &str) -> String {
    server
        .ok(&[
            "change",
            "record",
            "--kind",
            "deploy",
            "--service",
            service,
            "--env",
            env,
            "--summary",
            summary,
        ])
        .trim()
        .to_string()
}

/// A simple SSE reader over a blocking response: yields (event, id, data).
pub struct Sse {
    reader: BufReader<reqwest::blocking::Response>,
}

impl Sse {
    pub fn open(server_url: &str, token: &str, last_event_id: Option<i64>) -> Sse {
        Sse::open_at(
            server_url,
            "/api/v1/changes/stream",
            &format!("Bearer {token}"),
            last_event_id,
        )
    }

    /// A stream at `path`, sending `authorization` as it is (SDKs send a bare token).
    pub fn open_at(
        server_url: &str,
        path: &str,
        authorization: &str,
        last_event_id: Option<i64>,
    ) -> Sse {
        let client = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .unwrap();
        let mut request = client
            .get(format!("{server_url}{path}"))
            .header("authorization", authorization);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().expect("open stream");
        assert_eq!(response.status().as_u16(), 200);
        Sse {
            reader: BufReader::new(response),
        }
    }

    /// The next event (skipping keep-alive comments); `None` when the stream ends.
    pub fn next_event(&mut self) -> Option<(String, i64, String)> {
        let (mut event, mut id, mut data) = (String::new(), 0i64, String::new());
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !event.is_empty() {
                    return Some((event, id, data));
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    }
}
