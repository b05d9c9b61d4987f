//! One attempt to send a notification to one receiver: a webhook POST or an e-mail over
//! SMTP. An error says what went wrong in words for `gantry alert list`, never the
//! webhook's URL (chat webhooks carry their secret in it) or a password.

use std::time::Duration;

use gantry_monitors::Notification;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{
    read_secret, EmailReceiver, SmtpConfig, SmtpTls, WebhookFormat, WebhookReceiver,
};
use super::message;

/// POSTs the notification. Success is any 2xx answer; redirects are not followed (the
/// client is built without them), and the whole exchange is bounded by the receiver's
/// timeout.
pub async fn webhook(
    http: &reqwest::Client,
    receiver: &WebhookReceiver,
    n: &Notification,
) -> Result<(), String> {
    let body = match receiver.format {
        WebhookFormat::Json => message::json_body(n),
        WebhookFormat::Slack => message::slack_body(n),
    };
    let mut request = http
        .post(&receiver.url)
        .timeout(Duration::from_secs(receiver.timeout_secs))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", &n.id)
        .header("X-Gantry-Notification", &n.id);
    if let Some(file) = &receiver.secret_file {
        let key = read_secret(file).map_err(|e| format!("signing key: {e}"))?;
        request = request.header(
            "X-Gantry-Signature",
            message::signature(key.as_bytes(), &body),
        );
    }
    let answer = request.body(body).send().await.map_err(|e| {
        let e = e.without_url();
        if e.is_timeout() {
            format!("no answer within {} s", receiver.timeout_secs)
        } else if e.is_connect() {
            format!("cannot connect: {}", root_cause(&e))
        } else {
            format!("request failed: {}", root_cause(&e))
        }
    })?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {status}"))
    }
}

/// The innermost error's text (reqwest wraps hyper wraps io).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Sends the notification as a plain-text e-mail to the receiver's addresses through the
/// configured SMTP server, with a Message-ID derived from the notification (a retry is the
/// same message).
pub async fn email(
    smtp: &SmtpConfig,
    receiver: &EmailReceiver,
    n: &Notification,
) -> Result<(), String> {
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| format!("notify.smtp.from: {e}"))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(message::subject(n))
        .message_id(Some(message::message_id(n, &receiver.name)))
        .header(ContentType::TEXT_PLAIN);
    for to in &receiver.to {
        let to: Mailbox = to.parse().map_err(|e| format!("address '{to}': {e}"))?;
        builder = builder.to(to);
    }
    let mail = builder
        .body(message::text(n))
        .map_err(|e| format!("cannot build the message: {e}"))?;
    let port = smtp.port();
    let where_ = format!("SMTP server {}:{port}", smtp.host);
    let timeout = Duration::from_secs(smtp.timeout_secs);
    let builder = match smtp.tls {
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host),
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host),
        SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            &smtp.host,
        )),
    }
    .map_err(|e| format!("{where_}: {e}"))?;
    let mut builder = builder.port(port).timeout(Some(timeout));
    if let (Some(user), Some(file)) = (&smtp.username, &smtp.password_file) {
        let password = read_secret(file).map_err(|e| format!("SMTP password: {e}"))?;
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    let transport = builder.build();
    // lettre bounds each read and write; this bounds the whole conversation.
    match tokio::time::timeout(timeout * 3, transport.send(mail)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{where_}: {e}")),
        Err(_) => Err(format!(
            "{where_}: no answer within {} s",
            timeout.as_secs() * 3
        )),
    }
}
