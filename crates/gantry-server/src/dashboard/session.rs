//! Signing in to the dashboard, and who is looking at a page.
//!
//! A person signs in once with an API token. The browser then holds a cookie with a random
//! 256-bit id; the store keeps the id's SHA-256, the token it stands for, a CSRF secret and
//! two expiries (12 h idle, 7 days absolute, never past the token's own). Every request
//! reads the session and the token again, so signing out or revoking the token ends the
//! session at once on every server. The cookie counts only on dashboard routes.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use gantry_core::http::safe_next;
use gantry_core::{Grant, ScopeName};
use gantry_store::SessionRecord;
use maud::html;
use rand::RngCore as _;
use serde::Deserialize;

use super::view::{page, Nav, UiError};
use crate::config::SecureCookies;
use crate::state::AppState;

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::hours(12);
/// A session ends after this long whatever happens.
pub const ABSOLUTE: Duration = Duration::days(7);
/// A request moves the idle expiry on only when the last one is older than this, so a
/// busy page does not write to the store on every request.
const TOUCH_AFTER: Duration = Duration::seconds(60);

/// The person looking at a page: the token they signed in with and their session.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub grant: Grant,
    /// The value every form and htmx request must send back (`_csrf`, `X-CSRF-Token`).
    pub csrf: String,
    /// The session's key in the store.
    pub session: String,
}

impl Viewer {
    pub fn allows(&self, scope: ScopeName, service: Option<&str>, env: Option<&str>) -> bool {
        self.grant.allows(scope, service, env)
    }

    pub fn is_admin(&self) -> bool {
        self.grant.allows(ScopeName::Admin, None, None)
    }

    /// Refuses with 403 unless the token holds `scope` for this service and environment.
    pub fn require(
        &self,
        scope: ScopeName,
        service: Option<&str>,
        env: Option<&str>,
    ) -> Result<(), UiError> {
        if self.allows(scope, service, env) {
            return Ok(());
        }
        let wanted = gantry_core::Scope {
            name: scope,
            service: service.map(str::to_string),
            environment: env.map(str::to_string),
        };
        Err(UiError::forbidden(format!(
            "token '{}' lacks the scope {wanted} this needs (it has {})",
            self.grant.token_name,
            gantry_core::Scope::format_list(&self.grant.scopes)
        )))
    }

    /// The change metadata's actor for what this person does.
    pub fn actor(&self) -> crate::ship::rollouts::Actor {
        crate::ship::rollouts::Actor {
            name: self.grant.token_name.clone(),
            via: Some("dashboard".to_string()),
        }
    }
}

/// The cookie's name: `__Host-gantry` when it is `Secure` (the prefix makes browsers
/// refuse it from anywhere but this origin over HTTPS), `gantry` otherwise.
fn cookie_name(state: &AppState) -> &'static str {
    if secure(state) {
        "__Host-gantry"
    } else {
        "gantry"
    }
}

fn secure(state: &AppState) -> bool {
    match state.config.dashboard.secure_cookies {
        SecureCookies::Always => true,
        SecureCookies::Auto => state.config.tls.is_some(),
    }
}

/// The session cookie's value in a request, if any.
fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    gantry_core::http::cookie_value(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        name,
    )
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Why a request has no viewer.
#[derive(Debug)]
pub enum NoViewer {
    /// No cookie, or one naming no live session.
    SignedOut { expired: bool },
    /// The store failed.
    Failed(UiError),
}

/// The viewer of a request, if it carries a live session whose token still holds. `touch`:
/// the request is a person's (a page, a form), which moves the idle expiry on; a stream's
/// re-check or a page's own refresh does not, or an open tab would never go idle.
pub async fn viewer(
    state: &AppState,
    headers: &HeaderMap,
    touch: bool,
) -> Result<Viewer, NoViewer> {
    let Some(id) = cookie_value(headers, cookie_name(state)) else {
        return Err(NoViewer::SignedOut { expired: false });
    };
    let digest = gantry_core::token::digest(id);
    let session = state
        .store
        .get_session(&digest)
        .await
        .map_err(|e| NoViewer::Failed(e.into()))?
        .ok_or(NoViewer::SignedOut { expired: true })?;
    let now = Utc::now();
    if session.idle_expires_at <= now || session.expires_at <= now {
        let _ = state.store.delete_session(&digest).await;
        return Err(NoViewer::SignedOut { expired: true });
    }
    let info = match crate::auth::valid_token(state, &session.token_digest).await {
        Ok(info) => info,
        Err(e) if e.status.is_server_error() => return Err(NoViewer::Failed(e.into())),
        Err(_) => {
            let _ = state.store.delete_session(&digest).await;
            return Err(NoViewer::SignedOut { expired: true });
        }
    };
    if touch && now - session.last_seen_at > TOUCH_AFTER {
        let idle = (now + IDLE).min(session.expires_at);
        let _ = state.store.touch_session(&digest, now, idle).await;
    }
    Ok(Viewer {
        grant: Grant {
            token_name: info.name,
            scopes: info.scopes,
        },
        csrf: session.csrf_secret,
        session: digest,
    })
}

/// Pages: a signed-out visitor is sent to the sign-in page, which brings them back.
impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        // htmx's own GETs (live refreshes, polls) are the page's, not the person's.
        let touch = !(is_htmx(&parts.headers) && parts.method == axum::http::Method::GET);
        match viewer(state, &parts.headers, touch).await {
            Ok(v) => Ok(v),
            Err(NoViewer::Failed(e)) => Err(e.into_response()),
            Err(NoViewer::SignedOut { expired }) => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                let mut to = format!(
                    "/ui/sign-in?next={}",
                    form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                if expired {
                    to.push_str("&expired=1");
                }
                if is_htmx(&parts.headers) {
                    // htmx follows a redirect inside the page; this makes it load the page.
                    let mut r = StatusCode::UNAUTHORIZED.into_response();
                    if let Ok(v) = HeaderValue::from_str(&to) {
                        r.headers_mut().insert("HX-Redirect", v);
                    }
                    return Err(r);
                }
                Err(Redirect::to(&to).into_response())
            }
        }
    }
}

pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("HX-Request")
}

/// Whether a POST comes from a page of this server: its `Origin` names this host, or,
/// without one, `Sec-Fetch-Site` says `same-origin`. A request with neither is refused.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    gantry_core::http::same_origin(
        text(header::ORIGIN.as_str()),
        text(header::HOST.as_str()),
        text("Sec-Fetch-Site"),
    )
}

/// Checks a POST: same origin, and the session's CSRF value in `X-CSRF-Token` or the
/// form's `_csrf` field.
pub fn check_post(
    viewer: &Viewer,
    headers: &HeaderMap,
    form_csrf: Option<&str>,
) -> Result<(), UiError> {
    if !same_origin(headers) {
        return Err(UiError::forbidden(
            "this form must be sent from a page of this server (the Origin header does not match)",
        ));
    }
    let sent = headers
        .get("X-CSRF-Token")
        .and_then(|v| v.to_str().ok())
        .or(form_csrf);
    if !gantry_core::http::csrf_matches(sent, &viewer.csrf) {
        return Err(UiError::forbidden(
            "the form's CSRF value is missing or stale; reload the page and try again",
        ));
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    expired: Option<String>,
}

/// `GET /ui/sign-in`.
pub async fn sign_in_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SignInQuery>,
) -> Response {
    if viewer(&state, &headers, true).await.is_ok() {
        return Redirect::to(&safe_next(q.next.as_deref())).into_response();
    }
    sign_in_form(
        &state,
        q.next.as_deref(),
        q.expired
            .is_some()
            .then_some("Your session has ended; sign in again."),
        StatusCode::OK,
    )
}

fn sign_in_form(
    state: &AppState,
    next: Option<&str>,
    message: Option<&str>,
    status: StatusCode,
) -> Response {
    let admin_file = state.config.data_dir.join(crate::ADMIN_TOKEN_FILE);
    let body = html! {
        section.signin {
            h1 { "Sign in to Gantry" }
            @if let Some(m) = message {
                p.notice role="alert" { (m) }
            }
            form method="post" action="/ui/sign-in" {
                input type="hidden" name="next" value=(safe_next(next));
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="off" required spellcheck="false";
                p.hint {
                    "Paste a token made with " code { "gantry token create ann --scopes read,deploy" } ". "
                    "On a new server the admin token is in " code { (admin_file.display()) } "."
                }
                button type="submit" { "Sign in" }
            }
        }
    };
    (status, page(None, "Sign in", Nav::None, body)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    token: String,
    next: Option<String>,
}

/// `POST /ui/sign-in`: checked by `Origin` (there is no session yet to carry a CSRF value).
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SignInForm>,
) -> Response {
    if !same_origin(&headers) {
        return UiError::forbidden(
            "sign in from this server's own sign-in page (the Origin header does not match)",
        )
        .into_response();
    }
    let digest = gantry_core::http::sign_in_digest(&form.token);
    let info = match crate::auth::valid_token(&state, &digest).await {
        Ok(info) => info,
        Err(e) if e.status.is_server_error() => return UiError::from(e).into_response(),
        Err(e) => {
            tracing::info!("dashboard sign-in refused");
            return sign_in_form(
                &state,
                form.next.as_deref(),
                Some(&e.message),
                StatusCode::UNAUTHORIZED,
            );
        }
    };
    let now = Utc::now();
    let absolute = match info.expires_at {
        Some(t) => (now + ABSOLUTE).min(t),
        None => now + ABSOLUTE,
    };
    let id = random_token();
    let record = SessionRecord {
        id_digest: gantry_core::token::digest(&id),
        token_name: info.name.clone(),
        token_digest: digest,
        csrf_secret: random_token(),
        created_at: now,
        last_seen_at: now,
        idle_expires_at: (now + IDLE).min(absolute),
        expires_at: absolute,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(200).collect()),
    };
    if let Err(e) = state.store.create_session(&record).await {
        return UiError::from(e).into_response();
    }
    tracing::info!(token = %info.name, "dashboard session started");
    let mut response = Redirect::to(&safe_next(form.next.as_deref())).into_response();
    set_cookie(&state, &mut response, &id, Some(absolute));
    response
}

fn set_cookie(
    state: &AppState,
    response: &mut Response,
    value: &str,
    expires: Option<DateTime<Utc>>,
) {
    let mut cookie = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict",
        cookie_name(state)
    );
    if secure(state) {
        cookie.push_str("; Secure");
    }
    match expires {
        Some(at) => cookie.push_str(&format!(
            "; Expires={}",
            at.format("%a, %d %b %Y %H:%M:%S GMT")
        )),
        None => cookie.push_str("; Max-Age=0"),
    }
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The body of a form whose only field is the session's CSRF value (its action is in the
/// path).
#[derive(Debug, Default, Deserialize)]
pub struct CsrfForm {
    #[serde(rename = "_csrf")]
    pub csrf: Option<String>,
}

/// `POST /ui/sign-out`: ends the session everywhere at once.
pub async fn sign_out(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    if let Err(e) = check_post(&viewer, &headers, form.csrf.as_deref()) {
        return e.into_response();
    }
    if let Err(e) = state.store.delete_session(&viewer.session).await {
        return UiError::from(e).into_response();
    }
    tracing::info!(token = %viewer.grant.token_name, "dashboard session ended");
    let mut response = Redirect::to("/ui/sign-in").into_response();
    set_cookie(&state, &mut response, "", None);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(
            safe_next(Some("/ui/hosts?environment=prod")),
            "/ui/hosts?environment=prod"
        );
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/");
        assert_eq!(safe_next(Some("/\n/evil.example")), "/");
        assert_eq!(
            safe_next(Some("/ui/changes?kind=flag")),
            "/ui/changes?kind=flag"
        );
    }

    #[test]
    fn origin_must_match_the_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7070"));
        assert!(!same_origin(&h), "neither Origin nor Sec-Fetch-Site");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7070"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
        h.remove(header::ORIGIN);
        h.insert("Sec-Fetch-Site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h));
        h.insert("Sec-Fetch-Site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; gantry=abc; b=2"),
        );
        assert_eq!(cookie_value(&h, "gantry"), Some("abc"));
        assert_eq!(cookie_value(&h, "__Host-gantry"), None);
    }
}
