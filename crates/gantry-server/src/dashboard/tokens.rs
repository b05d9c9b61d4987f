//! `/ui/tokens` (admin): create a token (its secret shown once), list and revoke tokens,
//! see dashboard sessions and end them.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use gantry_core::token::CreatedToken;
use gantry_core::{NewToken, Scope, ScopeName};
use maud::{html, Markup};
use serde::Deserialize;

use super::session::{check_post, CsrfForm, Viewer};
use super::view::{self, time, time_or_dash, Nav, UiError, UiResult};
use crate::state::AppState;

async fn render(
    state: &AppState,
    viewer: &Viewer,
    created: Option<&CreatedToken>,
    error: Option<&str>,
) -> UiResult {
    viewer.require(ScopeName::Admin, None, None)?;
    let tokens = state.store.list_tokens().await?;
    let sessions = state.store.list_sessions().await?;
    let now = chrono::Utc::now();
    let body = html! {
        h1 { "Tokens" }
        @if let Some(c) = created {
            section.notice role="status" {
                h2 { "Token " (c.info.name) " created" }
                p { "Copy it now: it is shown this once, and the server keeps only its digest." }
                label for="new-secret" { "Secret" }
                input #new-secret type="text" readonly value=(c.token) spellcheck="false" autocomplete="off";
            }
        }
        @if let Some(e) = error { p.error role="alert" { (e) } }
        section aria-labelledby="create-h" {
            h2 #create-h { "Create a token" }
            form.stack method="post" action="/ui/tokens" {
                input type="hidden" name="_csrf" value=(viewer.csrf);
                label for="t-name" { "Name" }
                input #t-name type="text" name="name" required pattern="[A-Za-z0-9][A-Za-z0-9._\\-]*";
                label for="t-scopes" { "Scopes" }
                input #t-scopes type="text" name="scopes" required placeholder="read,deploy:shop@stage" aria-describedby="t-scopes-hint";
                p.hint #t-scopes-hint { "Comma-separated: read, write, deploy, flags, migrate, admin; narrowed as deploy:SERVICE@ENV." }
                label for="t-expires" { "Expires in" }
                input #t-expires type="text" name="expires_in" placeholder="90d (empty: never)";
                button type="submit" { "Create token" }
            }
        }
        section aria-labelledby="list-h" {
            h2 #list-h { "Active tokens" }
            div.scroll {
                table.grid {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Scopes" } th scope="col" { "Created" }
                        th scope="col" { "Expires" } th scope="col" { "Sessions" } th scope="col" { span.sr-only { "Actions" } }
                    } }
                    tbody {
                        @for t in &tokens {
                            @let live = sessions.iter().filter(|s| s.token_name == t.name && s.expires_at > now && s.idle_expires_at > now).count();
                            tr {
                                th scope="row" { (t.name) }
                                td { code { (Scope::format_list(&t.scopes)) } }
                                td { (time(t.created_at)) " by " (t.created_by) }
                                td { (time_or_dash(t.expires_at)) }
                                td {
                                    (live)
                                    @if live > 0 {
                                        form.inline method="post" action="/ui/sessions/end" {
                                            input type="hidden" name="_csrf" value=(viewer.csrf);
                                            input type="hidden" name="token" value=(t.name);
                                            button type="submit" { "End sessions" span.sr-only { " of " (t.name) } }
                                        }
                                    }
                                }
                                td {
                                    form.inline method="post" action=(format!("/ui/tokens/{}/revoke", t.name)) {
                                        input type="hidden" name="_csrf" value=(viewer.csrf);
                                        button.danger type="submit" { "Revoke" span.sr-only { " " (t.name) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(view::page(Some(viewer), "Tokens", Nav::Tokens, body))
}

/// `GET /ui/tokens`.
pub async fn page(State(state): State<AppState>, viewer: Viewer) -> UiResult {
    render(&state, &viewer, None, None).await
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
    name: String,
    scopes: String,
    expires_in: Option<String>,
}

/// `POST /ui/tokens`: the answer is the page with the new secret, once.
pub async fn create(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CreateForm>,
) -> Result<Response, UiError> {
    check_post(&viewer, &headers, form.csrf.as_deref())?;
    viewer.require(ScopeName::Admin, None, None)?;
    let scopes = match Scope::parse_list(&form.scopes) {
        Ok(s) => s,
        Err(e) => {
            let page = render(&state, &viewer, None, Some(&e.to_string())).await?;
            return Ok((StatusCode::BAD_REQUEST, page).into_response());
        }
    };
    let new = NewToken {
        name: form.name.trim().to_string(),
        scopes,
        expires_in: form
            .expires_in
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty()),
    };
    match crate::api::tokens::create(&state, &viewer.grant.token_name, new).await {
        Ok(created) => {
            let page: Markup = render(&state, &viewer, Some(&created), None).await?;
            Ok((StatusCode::CREATED, page).into_response())
        }
        Err(e) if e.status.is_client_error() => {
            let page = render(&state, &viewer, None, Some(&e.message)).await?;
            Ok((e.status, page).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /ui/tokens/{name}/revoke`: the token stops working, and its sessions end, on every
/// server at once.
pub async fn revoke(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Result<Response, UiError> {
    check_post(&viewer, &headers, form.csrf.as_deref())?;
    viewer.require(ScopeName::Admin, None, None)?;
    crate::api::tokens::revoke(&state, &viewer.grant.token_name, &name).await?;
    Ok(Redirect::to("/ui/tokens").into_response())
}

#[derive(Debug, Deserialize)]
pub struct EndForm {
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
    token: String,
}

/// `POST /ui/sessions/end`: signs every session of a token out.
pub async fn end_sessions(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    axum::Form(form): axum::Form<EndForm>,
) -> Result<Response, UiError> {
    check_post(&viewer, &headers, form.csrf.as_deref())?;
    viewer.require(ScopeName::Admin, None, None)?;
    let n = state.store.delete_token_sessions(&form.token).await?;
    tracing::info!(token = %form.token, sessions = n, "dashboard sessions ended");
    Ok(Redirect::to("/ui/tokens").into_response())
}
