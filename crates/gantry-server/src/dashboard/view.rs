//! The page shell and the small pieces every page uses: times, states, empty states, the
//! error page. Templates are maud: checked at compile time, every value escaped. No page
//! holds inline script or a `style` attribute (the Content-Security-Policy forbids both).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use gantry_web_assets::url as asset;
use maud::{html, Markup, DOCTYPE};

use super::session::Viewer;
use crate::error::ApiError;

/// The navigation's sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Changes,
    Hosts,
    Metrics,
    Flags,
    Migrations,
    Incidents,
    Report,
    Tokens,
    None,
}

/// htmx's configuration: no eval (so no `hx-on`, trigger filters or `js:` values), no
/// script tags from responses, no indicator styles of its own (ours are in app.css).
const HTMX_CONFIG: &str = r#"{"allowEval":false,"allowScriptTags":false,"includeIndicatorStyles":false,"selfRequestsOnly":true,"historyCacheSize":0}"#;

/// A whole page. `title` goes to the tab (with "failing" counts added by the caller).
pub fn page(viewer: Option<&Viewer>, title: &str, nav: Nav, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=(HTMX_CONFIG);
                meta name="color-scheme" content="light dark";
                @if let Some(v) = viewer {
                    meta name="csrf-token" content=(v.csrf);
                }
                title { (title) " · Gantry" }
                // No favicon request (it would be a 404 in every tab's console).
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(asset("uplot.css"));
                link rel="stylesheet" href=(asset("app.css"));
                script src=(asset("htmx.js")) defer {}
                script src=(asset("htmx-sse.js")) defer {}
                script src=(asset("uplot.js")) defer {}
                script src=(asset("app.js")) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Gantry" }
                    @if let Some(v) = viewer {
                        nav aria-label="Sections" {
                            ul {
                                (item("/", "Overview", nav == Nav::Overview))
                                (item("/ui/changes", "Changes", nav == Nav::Changes))
                                (item("/ui/hosts", "Hosts", nav == Nav::Hosts))
                                (item("/ui/metrics", "Metrics", nav == Nav::Metrics))
                                (item("/ui/flags", "Flags", nav == Nav::Flags))
                                (item("/ui/migrations", "Migrations", nav == Nav::Migrations))
                                (item("/ui/incidents", "Incidents", nav == Nav::Incidents))
                                (item("/ui/report", "Report", nav == Nav::Report))
                                @if v.is_admin() {
                                    (item("/ui/tokens", "Tokens", nav == Nav::Tokens))
                                }
                            }
                        }
                        div.who {
                            span { "Signed in as " strong { (v.grant.token_name) } }
                            form method="post" action="/ui/sign-out" {
                                input type="hidden" name="_csrf" value=(v.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

fn item(href: &str, label: &str, current: bool) -> Markup {
    html! {
        li {
            @if current {
                a href=(href) aria-current="page" { (label) }
            } @else {
                a href=(href) { (label) }
            }
        }
    }
}

/// A time: UTC text the server writes (readable with JavaScript off), which app.js turns
/// into the browser's time zone with a relative time beside it.
pub fn time(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) data-rel {
            (at.format("%Y-%m-%d %H:%M:%S UTC"))
        }
    }
}

/// An optional time, or a dash.
pub fn time_or_dash(at: Option<DateTime<Utc>>) -> Markup {
    match at {
        Some(at) => time(at),
        None => html! { span.muted { "—" } },
    }
}

/// A state as a badge: the word is always there, the colour only repeats it.
pub fn badge(word: &str) -> Markup {
    html! { span class=(format!("badge s-{}", tone(word))) { (word.replace('_', " ")) } }
}

/// Which colour family a state word belongs to.
pub fn tone(word: &str) -> &'static str {
    match word {
        "succeeded" | "online" | "ok" | "resolved" | "done" | "applied" | "on" => "good",
        "failed" | "rolled_back" | "aborted" | "lost" | "critical" | "regression" | "open"
        | "interrupted" => "bad",
        "running" | "rolling_back" | "in_progress" | "pending" | "paused" | "warning"
        | "acknowledged" | "mitigated" => "busy",
        _ => "plain",
    }
}

/// An empty state: what is missing and what to do about it.
pub fn empty(what: &str, next: Markup) -> Markup {
    html! {
        div.empty role="status" {
            p { strong { (what) } }
            p { (next) }
        }
    }
}

/// The live indicator of a page that follows a stream (app.js keeps its text true:
/// "live", or "reconnecting since …").
pub fn live_badge() -> Markup {
    html! { span.live data-live-status role="status" aria-live="polite" { "live" } }
}

/// A form or query value as given, trimmed; `None` when absent or blank.
pub fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Text from a terminal (hook output, a job's log) for a page: ANSI escape sequences
/// (colours, cursor moves) and other control characters are dropped, tabs and line breaks
/// kept. maud escapes the rest.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ parameters… final byte (@ to ~); other escapes: ESC and one more.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A short id for display.
pub fn short(id: &str) -> &str {
    id.get(..10).unwrap_or(id)
}

/// What a page answers when something is wrong: the status with an HTML page saying what
/// and what to do.
#[derive(Debug)]
pub struct UiError {
    pub status: StatusCode,
    pub message: String,
}

impl UiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> UiError {
        UiError {
            status,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> UiError {
        UiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn forbidden(message: impl Into<String>) -> UiError {
        UiError::new(StatusCode::FORBIDDEN, message)
    }
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> UiError {
        UiError::new(e.status, e.message)
    }
}

impl From<gantry_store::StoreError> for UiError {
    fn from(e: gantry_store::StoreError) -> UiError {
        ApiError::from(e).into()
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let heading = match self.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::CONFLICT => "Cannot do that now",
            StatusCode::BAD_REQUEST => "Something in the request is wrong",
            s if s.is_server_error() => "The server could not answer",
            _ => "Something went wrong",
        };
        let body = page(
            None,
            heading,
            Nav::None,
            html! {
                h1 { (heading) }
                p.error role="alert" { (self.message) }
                p { a href="/" { "Back to the overview" } }
            },
        );
        (self.status, body).into_response()
    }
}

/// What every page handler returns.
pub type UiResult<T = Markup> = Result<T, UiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_are_dropped() {
        assert_eq!(
            plain("\u{1b}[31mred\u{1b}[0m ok\r\n\tnext\u{7}"),
            "red ok\n\tnext"
        );
        assert_eq!(plain("\u{1b}]x"), "x");
        assert_eq!(plain("<b>as text</b>"), "<b>as text</b>");
    }

    #[test]
    fn states_have_words_and_tones() {
        let html = badge("rolled_back").into_string();
        assert_eq!(html, "<span class=\"badge s-bad\">rolled back</span>");
        assert_eq!(tone("succeeded"), "good");
        assert_eq!(tone("whatever"), "plain");
    }
}
