//! Failed authentications, counted per client address in this process's memory.
//!
//! A request that presents a credential the server does not accept (an unknown, expired or
//! revoked token, in any header the routes read, or pasted into the dashboard's sign-in)
//! counts against its address. Once an address has [`LIMIT`] failures within a minute, its
//! requests that come without a valid credential get `429 Too Many Requests` with
//! `Retry-After` until the minute is over; requests with a valid credential are still
//! served, so a user behind the same address as a guesser keeps working. A request without
//! any credential, or with a ping key (a ping answers 404 to an unknown key, never 401), is
//! not counted.
//!
//! This is the one piece of shared in-process state the request path has (ARCHITECTURE.md
//! says why): each server counts for itself, so behind a balancer of N servers a guesser
//! gets up to N × [`LIMIT`] tries a minute. That is the point where guessing a 256-bit
//! secret stays hopeless and the store is spared a flood of lookups; a shared count would
//! put a database write on every failed request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an address may have within [`WINDOW`] before it is refused.
pub const LIMIT: u32 = 20;

/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Addresses tracked at once. Past it, windows that ended are dropped; if every one is
/// still running, the oldest half go, so memory stays bounded under a spray of addresses.
const MAX_ADDRESSES: usize = 65_536;

/// An address as counted: IPv4 whole, IPv6 by its /64 (one host usually holds a whole /64,
/// so counting single IPv6 addresses would let it rotate past the limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey([u8; 16]);

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey(v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return ClientKey(v4.to_ipv6_mapped().octets());
                }
                let mut octets = v6.octets();
                octets[8..].fill(0);
                ClientKey(octets)
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// The counts. Cheap to consult: one short lock, no I/O.
#[derive(Debug, Default)]
pub struct AuthFailures {
    windows: Mutex<HashMap<ClientKey, Window>>,
}

impl AuthFailures {
    /// Counts one failed authentication from `ip` at `now`.
    pub fn record(&self, ip: IpAddr, now: Instant) {
        let key = ClientKey::of(ip);
        let mut windows = self.lock();
        if windows.len() >= MAX_ADDRESSES && !windows.contains_key(&key) {
            make_room(&mut windows, now);
        }
        let window = windows.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.saturating_duration_since(window.started) >= WINDOW {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }

    /// How long `ip` must wait, if it has reached the limit within the current window.
    pub fn retry_after(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let windows = self.lock();
        let window = windows.get(&ClientKey::of(ip))?;
        let elapsed = now.saturating_duration_since(window.started);
        if elapsed >= WINDOW || window.failures < LIMIT {
            return None;
        }
        Some(WINDOW - elapsed)
    }

    /// The addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, Window>> {
        // A panic while holding this lock leaves only counts behind; keep using them.
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn make_room(windows: &mut HashMap<ClientKey, Window>, now: Instant) {
    windows.retain(|_, w| now.saturating_duration_since(w.started) < WINDOW);
    if windows.len() < MAX_ADDRESSES {
        return;
    }
    let mut starts: Vec<Instant> = windows.values().map(|w| w.started).collect();
    starts.sort_unstable();
    let cut = starts[starts.len() / 2];
    windows.retain(|_, w| w.started > cut);
}

/// The middleware: counts a refused credential against the client's address, and answers
/// 429 instead of 401 while the address is past the limit.
pub async fn limit(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if !state.config.auth.limit_failed_auth {
        return next.run(request).await;
    }
    let Some(ip) = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION)
        || (request.method() == axum::http::Method::POST && request.uri().path() == SIGN_IN);
    let response = next.run(request).await;
    if response.status() != axum::http::StatusCode::UNAUTHORIZED {
        return response;
    }
    let now = Instant::now();
    let refused = state.auth_failures.retry_after(ip, now);
    if presented {
        state.auth_failures.record(ip, now);
        state.metrics.auth_failures.inc();
    }
    let Some(wait) = refused else {
        return response;
    };
    let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let mut refusal = crate::error::ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        format!(
            "too many failed authentications from this address ({LIMIT} within a minute); requests without a valid token are refused for {seconds} s more"
        ),
    )
    .into_response();
    refusal.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(seconds),
    );
    refusal
}

/// The dashboard's sign-in, where a token arrives in a form instead of a header.
const SIGN_IN: &str = "/ui/sign-in";

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_is_refused_after_the_limit_until_its_minute_ends() {
        let failures = AuthFailures::default();
        let start = Instant::now();
        for n in 0..LIMIT {
            assert_eq!(
                failures.retry_after(ip("192.0.2.1"), start),
                None,
                "after {n}"
            );
            failures.record(ip("192.0.2.1"), start);
        }
        let wait = failures.retry_after(ip("192.0.2.1"), start + Duration::from_secs(15));
        assert_eq!(wait, Some(Duration::from_secs(45)));
        // Another address is not affected.
        assert_eq!(failures.retry_after(ip("192.0.2.2"), start), None);
        // The minute ends: a fresh start.
        let later = start + WINDOW;
        assert_eq!(failures.retry_after(ip("192.0.2.1"), later), None);
        failures.record(ip("192.0.2.1"), later);
        assert_eq!(failures.retry_after(ip("192.0.2.1"), later), None);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientKey::of(ip("::ffff:192.0.2.1")),
            ClientKey::of(ip("192.0.2.1"))
        );
        assert_ne!(
            ClientKey::of(ip("192.0.2.1")),
            ClientKey::of(ip("192.0.2.2"))
        );
    }

    #[test]
    fn memory_stays_bounded_under_a_spray_of_addresses() {
        let failures = AuthFailures::default();
        let now = Instant::now();
        for n in 0..(MAX_ADDRESSES as u32 + 1000) {
            let address = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            failures.record(address, now + Duration::from_micros(u64::from(n)));
        }
        assert!(
            failures.tracked() <= MAX_ADDRESSES,
            "{}",
            failures.tracked()
        );
    }
}
