//! Small real peers the server talks to in tests: an HTTP receiver that records webhook
//! requests (or never answers), and an SMTP sink that records messages (or refuses them).
//! Each listens on a real socket on 127.0.0.1 and runs on its own threads.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request a webhook receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// How a webhook receiver behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Webhook {
    /// Answers 200 to every request.
    Answer,
    /// Reads the request and never answers.
    Hang,
}

pub struct WebhookSink {
    pub addr: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl WebhookSink {
    pub fn start(mode: Webhook) -> WebhookSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let log = log.clone();
                std::thread::spawn(move || serve_http(stream, mode, &log));
            }
        });
        WebhookSink { addr, received }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until a request satisfies `want`; returns it.
    pub fn wait_for(&self, what: &str, want: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(r) = self.received().into_iter().find(|r| want(r)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no webhook request {what}; got {:#?}",
                self.received()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn serve_http(stream: TcpStream, mode: Webhook, log: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        log.lock().unwrap().push(Received {
            path,
            headers,
            body,
        });
        match mode {
            Webhook::Hang => {
                std::thread::sleep(Duration::from_secs(600));
                return;
            }
            Webhook::Answer => {
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if reader.get_mut().write_all(answer).is_err() {
                    return;
                }
            }
        }
    }
}

/// How an SMTP sink behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smtp {
    /// Accepts every message.
    Accept,
    /// Refuses every recipient with a permanent 550.
    RefuseRecipients,
}

/// A message an SMTP sink accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body), dot-unstuffed.
    pub data: String,
}

pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub fn start(mode: Smtp) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let log = mails.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let log = log.clone();
                std::thread::spawn(move || {
                    let _ = serve_smtp(stream, mode, &log);
                });
            }
        });
        SmtpSink { port, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    pub fn wait_for(&self, what: &str, want: impl Fn(&Mail) -> bool) -> Mail {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(m) = self.mails().into_iter().find(|m| want(m)) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no mail {what}; got {:#?}",
                self.mails()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn serve_smtp(stream: TcpStream, mode: Smtp, log: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    out.write_all(b"220 sink.test ESMTP\r\n")?;
    let mut from = String::new();
    let mut to = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            out.write_all(b"250-sink.test\r\n250 8BITMIME\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = command[10..].trim().to_string();
            to.clear();
            out.write_all(b"250 2.1.0 ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            match mode {
                Smtp::Accept => {
                    to.push(command[8..].trim().to_string());
                    out.write_all(b"250 2.1.5 ok\r\n")?;
                }
                Smtp::RefuseRecipients => {
                    out.write_all(b"550 5.1.1 mailbox unavailable\r\n")?;
                }
            }
        } else if upper == "DATA" {
            out.write_all(b"354 go ahead\r\n")?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            log.lock().unwrap().push(Mail {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            out.write_all(b"250 2.0.0 queued\r\n")?;
        } else if upper == "QUIT" {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            out.write_all(b"250 ok\r\n")?;
        } else {
            out.write_all(b"502 5.5.2 not implemented\r\n")?;
        }
    }
}
