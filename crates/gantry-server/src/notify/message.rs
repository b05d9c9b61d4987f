//! What a notification says: a one-line summary, Gantry's JSON body, a Slack-compatible
//! body, an e-mail, and the webhook signature. Pure functions of the notification, so a
//! retry sends the same bytes (and the same signature) as the first attempt.

use gantry_monitors::{Alert, Notification};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

/// The version of the JSON body's shape; bumped only for a change receivers would notice.
pub const BODY_VERSION: u32 = 1;

/// `firing` while any alert of the group fires, else `resolved`.
pub fn status(n: &Notification) -> &'static str {
    if n.firing.is_empty() {
        "resolved"
    } else {
        "firing"
    }
}

/// `monitor` or `monitor [series]`.
fn label(a: &Alert) -> String {
    if a.series.is_empty() {
        a.monitor.clone()
    } else {
        format!("{} [{}]", a.monitor, a.series)
    }
}

/// `monitor [series] STATE (value)`.
fn alert_line(a: &Alert) -> String {
    let mut line = format!("{} {}", label(a), a.state.as_str());
    if let Some(v) = a.value.filter(|v| v.is_finite()) {
        line.push_str(&format!(" ({v})"));
    }
    line
}

/// One line: `shop/prod: FIRING 2 (checkout-errors CRITICAL (12.5), …); resolved 1`.
pub fn summary(n: &Notification) -> String {
    let mut s = format!("{}/{}: ", n.group.service, n.group.environment);
    if n.firing.is_empty() {
        s.push_str("RESOLVED");
    } else {
        s.push_str(&format!("FIRING {}", n.firing.len()));
        let shown: Vec<String> = n.firing.iter().take(3).map(alert_line).collect();
        s.push_str(&format!(" ({}", shown.join(", ")));
        if n.firing.len() > 3 {
            s.push_str(&format!(", and {} more", n.firing.len() - 3));
        }
        s.push(')');
    }
    if !n.resolved.is_empty() {
        s.push_str(&format!("; resolved {}", n.resolved.len()));
    }
    if n.repeat {
        s.push_str(" (still firing)");
    }
    s
}

fn alert_json(a: &Alert) -> serde_json::Value {
    json!({
        "id": a.id(),
        "monitor": a.monitor,
        "series": a.series,
        "state": a.state.as_str(),
        "value": a.value.filter(|v| v.is_finite()),
        "started_at": a.started_at,
        "resolved_at": a.resolved_at,
        "labels": a.labels,
    })
}

/// Gantry's JSON body (docs/api.md, "Notifications").
pub fn json_body(n: &Notification) -> Vec<u8> {
    let body = json!({
        "version": BODY_VERSION,
        "id": n.id,
        "status": status(n),
        "service": n.group.service,
        "environment": n.group.environment,
        "sequence": n.sequence,
        "repeat": n.repeat,
        "at": n.at,
        "summary": summary(n),
        "firing": n.firing.iter().map(alert_json).collect::<Vec<_>>(),
        "resolved": n.resolved.iter().map(alert_json).collect::<Vec<_>>(),
    });
    body.to_string().into_bytes()
}

/// The plain text of a notification: the summary, then one line per alert.
pub fn text(n: &Notification) -> String {
    let mut out = summary(n);
    out.push('\n');
    if !n.firing.is_empty() {
        out.push_str("\nFiring:\n");
        for a in &n.firing {
            out.push_str(&format!(
                "- {} since {}\n",
                alert_line(a),
                a.started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
    }
    if !n.resolved.is_empty() {
        out.push_str("\nResolved:\n");
        for a in &n.resolved {
            let at = a
                .resolved_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            out.push_str(&format!("- {} at {at}\n", label(a)));
        }
    }
    out.push_str(&format!("\nNotification {}\n", n.id));
    out
}

/// Slack's incoming-webhook body: `{"text": …}` (markdown-ish text most chat tools take).
pub fn slack_body(n: &Notification) -> Vec<u8> {
    json!({ "text": text(n) }).to_string().into_bytes()
}

/// An e-mail's subject: `[Gantry] ` and the summary.
pub fn subject(n: &Notification) -> String {
    format!("[Gantry] {}", summary(n))
}

/// A Message-ID derived from the notification id, so a retried e-mail is the same message
/// to whoever deduplicates.
pub fn message_id(n: &Notification, receiver: &str) -> String {
    let clean: String = format!("{}.{receiver}", n.id)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("<{clean}@gantry>")
}

/// `sha256=<hex HMAC-SHA256 of the body under the key>`, the `X-Gantry-Signature` header.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length; new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{TimeZone, Utc};
    use gantry_monitors::{GroupKey, State};

    use super::*;

    fn alert(monitor: &str, series: &str, state: State, value: Option<f64>) -> Alert {
        Alert {
            monitor: monitor.into(),
            series: series.into(),
            service: "shop".into(),
            environment: "prod".into(),
            labels: BTreeMap::from([("team".into(), "checkout".into())]),
            state,
            value,
            started_at: Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap(),
            resolved_at: None,
            flapping: false,
        }
    }

    fn notification(firing: Vec<Alert>, resolved: Vec<Alert>) -> Notification {
        Notification {
            id: "shop/prod/1796634000000/2".into(),
            group: GroupKey {
                service: "shop".into(),
                environment: "prod".into(),
            },
            sequence: 2,
            at: Utc.with_ymd_and_hms(2026, 12, 7, 9, 5, 0).unwrap(),
            firing,
            resolved,
            repeat: false,
        }
    }

    #[test]
    fn summaries_name_what_fires_and_what_resolved() {
        let n = notification(
            vec![
                alert("checkout-errors", "web1", State::Critical, Some(12.5)),
                alert("nightly-export", "", State::Critical, None),
            ],
            vec![alert("latency", "", State::Ok, None)],
        );
        assert_eq!(
            summary(&n),
            "shop/prod: FIRING 2 (checkout-errors [web1] CRITICAL (12.5), nightly-export CRITICAL); resolved 1"
        );
        let many = notification(
            (0..5)
                .map(|i| alert("m", &format!("s{i}"), State::Warning, None))
                .collect(),
            vec![],
        );
        assert!(
            summary(&many).ends_with(", and 2 more)"),
            "{}",
            summary(&many)
        );
        let done = notification(vec![], vec![alert("latency", "", State::Ok, None)]);
        assert_eq!(summary(&done), "shop/prod: RESOLVED; resolved 1");
        assert_eq!(status(&done), "resolved");
    }

    #[test]
    fn the_json_body_is_stable_and_complete() {
        let n = notification(
            vec![alert(
                "checkout-errors",
                "web1",
                State::Critical,
                Some(f64::NAN),
            )],
            vec![],
        );
        let body = json_body(&n);
        assert_eq!(body, json_body(&n), "a retry sends the same bytes");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["id"], "shop/prod/1796634000000/2");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["firing"][0]["state"], "CRITICAL");
        assert_eq!(
            v["firing"][0]["value"],
            serde_json::Value::Null,
            "NaN is null"
        );
        assert_eq!(v["firing"][0]["labels"]["team"], "checkout");
        assert_eq!(
            v["firing"][0]["id"],
            "checkout-errors/web1@2026-12-07T09:00:00.000Z"
        );
    }

    #[test]
    fn slack_bodies_carry_text() {
        let n = notification(
            vec![alert("checkout-errors", "", State::Critical, Some(3.0))],
            vec![],
        );
        let v: serde_json::Value = serde_json::from_slice(&slack_body(&n)).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(
            text.starts_with("shop/prod: FIRING 1 (checkout-errors CRITICAL (3))"),
            "{text}"
        );
        assert!(
            text.contains("- checkout-errors CRITICAL (3) since 2026-12-07T09:00:00Z"),
            "{text}"
        );
    }

    #[test]
    fn signatures_are_rfc_2104_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn message_ids_are_stable_and_plain() {
        let n = notification(vec![], vec![]);
        assert_eq!(
            message_id(&n, "oncall"),
            "<shop.prod.1796634000000.2.oncall@gantry>"
        );
    }
}
