//! A tiny HTTP/1.1 server on 127.0.0.1 whose misbehaviour the tests choose: a connection
//! cut mid-body, a `Range` header ignored, a corrupted body.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Default)]
pub struct Behaviour {
    /// On the first request, send the full `Content-Length` but only this many body bytes,
    /// then close the connection.
    pub cut_first_after: Option<usize>,
    /// Answer 200 with the whole body even to a `Range` request.
    pub ignore_range: bool,
    /// Flip a byte in the middle of the body.
    pub corrupt: bool,
    /// Leave out `Content-Length` and end the body by closing the connection.
    pub no_length: bool,
    /// Answer with this status (and the body) instead.
    pub status: Option<u16>,
}

pub struct Server {
    pub url: String,
    /// The head of every request, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// Serves `body` at any path until the test ends.
pub async fn serve(body: Vec<u8>, behaviour: Behaviour) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/artifact.tar.gz", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    let body = Arc::new(body);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (body, behaviour, log) = (body.clone(), behaviour.clone(), log.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match socket.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let index = {
                    let mut log = log.lock().unwrap();
                    log.push(head.clone());
                    log.len() - 1
                };
                let range_start = head.lines().find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    if !name.eq_ignore_ascii_case("range") {
                        return None;
                    }
                    value
                        .trim()
                        .strip_prefix("bytes=")?
                        .strip_suffix('-')?
                        .parse::<usize>()
                        .ok()
                });
                let mut data = body.to_vec();
                if behaviour.corrupt && !data.is_empty() {
                    let mid = data.len() / 2;
                    data[mid] ^= 0xff;
                }
                let (status, content_range, data) = match (behaviour.status, range_start) {
                    (Some(status), _) => (status, None, data),
                    (None, Some(start)) if !behaviour.ignore_range && start <= data.len() => (
                        206,
                        Some(format!(
                            "bytes {start}-{}/{}",
                            data.len().saturating_sub(1),
                            data.len()
                        )),
                        data[start..].to_vec(),
                    ),
                    _ => (200, None, data),
                };
                let mut response = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
                if !behaviour.no_length {
                    response.push_str(&format!("Content-Length: {}\r\n", data.len()));
                }
                if let Some(range) = content_range {
                    response.push_str(&format!("Content-Range: {range}\r\n"));
                }
                response.push_str("\r\n");
                let send = match behaviour.cut_first_after {
                    Some(cut) if index == 0 => &data[..cut.min(data.len())],
                    _ => &data[..],
                };
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.write_all(send).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Server { url, requests }
}
