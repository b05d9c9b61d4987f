//! `/ui/flags`: every flag the viewer may read, per environment: on or off, its rollout and
//! targeting, its type (`kill-switch` flags are the ones meant to be turned off in an
//! emergency), who changed it last; turned on and off by a person with `flags` there,
//! through the rule the API's enable and disable use. Live: a flag change in the log
//! refreshes the table. `/ui/flags/{service}/{name}`: one flag's definition per
//! environment, its recent changes and its evaluations.
//!
//! The flag model has no kill switch apart from turning a flag off, and no read-only mode,
//! so on and off are the actions.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use gantry_core::{ChangeKind, ChangeQuery, ScopeName, Service};
use gantry_flags::edit::{self, Edit};
use gantry_flags::model::EnvironmentDefinition;
use gantry_store::{FlagRecord, FlagUsage};
use maud::{html, Markup};
use serde::Deserialize;

use super::session::{check_post, Viewer};
use super::view::{self, badge, empty, non_empty, time, Nav, UiError, UiResult};
use crate::flags::ops::{self, EnvChange};
use crate::state::AppState;

/// Recent changes shown on a flag's page.
const RECENT_CHANGES: usize = 20;

/// The list's filters; all live in the URL.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct FlagsQuery {
    pub service: Option<String>,
    pub environment: Option<String>,
}

impl FlagsQuery {
    fn service(&self) -> Option<&str> {
        non_empty(&self.service)
    }

    fn environment(&self) -> Option<&str> {
        non_empty(&self.environment)
    }

    fn filtered(&self) -> bool {
        self.service().is_some() || self.environment().is_some()
    }

    /// The filters as a query string (empty when there are none).
    fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(s) = self.service() {
            q.append_pair("service", s);
        }
        if let Some(e) = self.environment() {
            q.append_pair("environment", e);
        }
        q.finish()
    }

    /// `path` with these filters.
    fn at(&self, path: &str) -> String {
        let q = self.query();
        if q.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{q}")
        }
    }

    /// The list page with these filters.
    fn href(&self) -> String {
        self.at("/ui/flags")
    }
}

/// Where an action's form sends the person back to.
enum Back<'a> {
    List(&'a FlagsQuery),
    Flag,
}

/// One environment's definition of a flag: `None` when it was never set there (off).
struct EnvState<'a> {
    environment: String,
    definition: Result<Option<EnvironmentDefinition>, ()>,
    changed: Option<(chrono::DateTime<chrono::Utc>, &'a str)>,
}

impl EnvState<'_> {
    fn enabled(&self) -> bool {
        matches!(&self.definition, Ok(Some(d)) if d.enabled)
    }
}

/// The environments of `flag` in pipeline order (its service's, then any other it has a
/// definition in), only `only` when given.
fn environments<'a>(
    flag: &'a FlagRecord,
    pipeline: &[String],
    only: Option<&str>,
) -> Vec<EnvState<'a>> {
    let mut names: Vec<&str> = pipeline.iter().map(String::as_str).collect();
    for e in flag.environments.keys() {
        if !names.contains(&e.as_str()) {
            names.push(e);
        }
    }
    names
        .into_iter()
        .filter(|e| only.is_none_or(|o| o == *e))
        .map(|e| {
            let stored = flag.environments.get(e);
            EnvState {
                environment: e.to_string(),
                definition: match stored {
                    None => Ok(None),
                    Some(s) => serde_json::from_str(&s.definition)
                        .map(Some)
                        .map_err(|_| ()),
                },
                changed: stored.map(|s| (s.updated_at, s.updated_by.as_str())),
            }
        })
        .collect()
}

/// The rules of a definition in a few words: who it is on for, variants, dependencies.
fn rules(d: &EnvironmentDefinition) -> String {
    let mut parts: Vec<String> = Vec::new();
    if d.strategies.is_empty() {
        parts.push("everyone".into());
    }
    for s in &d.strategies {
        let mut p = match s.name.as_str() {
            "default" => "everyone".to_string(),
            "flexibleRollout" => format!(
                "rollout {}%",
                s.parameters.get("rollout").map_or("?", String::as_str)
            ),
            "userWithId" => "listed users".to_string(),
            other => other.to_string(),
        };
        if !s.constraints.is_empty() || !s.segments.is_empty() {
            p.push_str(" (targeted)");
        }
        if s.disabled == Some(true) {
            p.push_str(" (disabled)");
        }
        parts.push(p);
    }
    if !d.variants.is_empty() {
        let names: Vec<&str> = d.variants.iter().map(|v| v.name.as_str()).collect();
        parts.push(format!("variants {}", names.join(", ")));
    }
    for dep in &d.dependencies {
        parts.push(format!("needs {}", dep.feature));
    }
    parts.join(", ")
}

/// The state and rules cells of one environment.
fn state_cells(e: &EnvState) -> Markup {
    html! {
        @match &e.definition {
            Ok(Some(d)) => {
                td { (badge(if d.enabled { "on" } else { "off" })) }
                td.small { (rules(d)) }
            }
            Ok(None) => {
                td { (badge("off")) }
                td.small { span.muted { "never set here" } }
            }
            Err(()) => {
                td { (badge("unknown")) }
                td.small { span.error { "the stored definition cannot be read" } }
            }
        }
    }
}

fn changed_cell(e: &EnvState) -> Markup {
    html! {
        td {
            @match e.changed {
                Some((at, by)) => { (time(at)) " by " (by) }
                None => span.muted { "—" },
            }
        }
    }
}

/// The on or off button of one environment, for a person with `flags` there.
fn action(viewer: &Viewer, flag: &FlagRecord, e: &EnvState, back: &Back) -> Markup {
    let may = flag.archived_at.is_none()
        && e.definition.is_ok()
        && viewer.allows(ScopeName::Flags, Some(&flag.service), Some(&e.environment));
    let on = e.enabled();
    let verb = if on { "disable" } else { "enable" };
    html! {
        @if may {
            form.inline method="post" action=(format!("/ui/flags/{}/{}/environments/{}/{verb}", flag.service, flag.name, e.environment)) {
                input type="hidden" name="_csrf" value=(viewer.csrf);
                @match back {
                    Back::Flag => { input type="hidden" name="back" value="flag"; }
                    Back::List(q) => {
                        input type="hidden" name="back" value="list";
                        @if let Some(s) = q.service() { input type="hidden" name="filter_service" value=(s); }
                        @if let Some(env) = q.environment() { input type="hidden" name="filter_environment" value=(env); }
                    }
                }
                @if on {
                    button.danger type="submit" { "Turn off" span.sr-only { " " (flag.name) " in " (e.environment) } }
                } @else {
                    button type="submit" { "Turn on" span.sr-only { " " (flag.name) " in " (e.environment) } }
                }
            }
        }
    }
}

/// What the list shows: the flags the viewer may read with these filters, how many others
/// there are, and the readable services' pipelines.
struct Listing {
    flags: Vec<FlagRecord>,
    hidden: usize,
    services: Vec<Service>,
}

async fn readable(state: &AppState, viewer: &Viewer, q: &FlagsQuery) -> Result<Listing, UiError> {
    let mut flags = state.store.list_flags(q.service(), Some(false)).await?;
    let all = flags.len();
    flags.retain(|f| ops::may_read(&viewer.grant, &f.service));
    let mut services = state.store.list_services().await?;
    services.retain(|s| ops::may_read(&viewer.grant, &s.name));
    Ok(Listing {
        hidden: all - flags.len(),
        flags,
        services,
    })
}

fn pipeline<'a>(services: &'a [Service], service: &str) -> &'a [String] {
    services
        .iter()
        .find(|s| s.name == service)
        .map_or(&[], |s| s.environments.as_slice())
}

/// The table, refreshed whole when a flag changes.
fn table(viewer: &Viewer, q: &FlagsQuery, listing: &Listing) -> Markup {
    let rows: Vec<(&FlagRecord, Vec<EnvState>)> = listing
        .flags
        .iter()
        .map(|f| {
            (
                f,
                environments(f, pipeline(&listing.services, &f.service), q.environment()),
            )
        })
        .filter(|(_, envs)| !envs.is_empty())
        .collect();
    let back = Back::List(q);
    html! {
        div #flags-table hx-get=(q.at("/ui/flags/table")) hx-trigger="sse:created throttle:2s, sse:updated throttle:2s" hx-swap="outerHTML" {
            @if listing.flags.is_empty() && listing.hidden > 0 {
                p.muted {
                    "Your token reads none of the services these " (listing.hidden) " flags belong to; "
                    "a token with " code { "read" } " or " code { "flags" } " on a service shows its flags."
                }
            } @else if rows.is_empty() && !q.filtered() {
                (empty("No flags yet.", html! {
                    "Create one with " code { "gantry flag create checkout-v2 --service shop" }
                    " (it starts off everywhere), then turn it on here or with "
                    code { "gantry flag enable checkout-v2 --service shop --env stage" } "."
                }))
            } @else if rows.is_empty() {
                p.muted { "No flag matches these filters. " a href="/ui/flags" { "Show every flag" } }
            } @else {
                div.scroll {
                    table.grid {
                        caption.sr-only { "Flags per environment" }
                        thead { tr {
                            th scope="col" { "Flag" } th scope="col" { "Service" } th scope="col" { "Type" }
                            th scope="col" { "Environment" } th scope="col" { "State" } th scope="col" { "Rules" }
                            th scope="col" { "Last changed" } th scope="col" { span.sr-only { "Actions" } }
                        } }
                        tbody {
                            @for (f, envs) in &rows {
                                @for e in envs {
                                    tr id=(format!("flag-{}-{}-{}", f.service, f.name, e.environment)) {
                                        th scope="row" { a href=(format!("/ui/flags/{}/{}", f.service, f.name)) { (f.name) } }
                                        td { (f.service) }
                                        td { (f.flag_type) }
                                        td { (e.environment) }
                                        (state_cells(e))
                                        (changed_cell(e))
                                        td { (action(viewer, f, e, &back)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /ui/flags`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<FlagsQuery>,
) -> UiResult {
    // The stream starts where this page's read did, so a flip in between still refreshes it.
    let seq = state.store.last_event_seq().await?;
    let listing = readable(&state, &viewer, &q).await?;
    let envs = state.store.list_environments().await?;
    let mut stream = form_urlencoded::Serializer::new(String::new());
    stream.append_pair("after", &seq.to_string());
    stream.append_pair("kind", ChangeKind::Flag.as_str());
    if let Some(s) = q.service() {
        stream.append_pair("service", s);
    }
    let body = html! {
        div.heading {
            h1 { "Flags" }
            (view::live_badge())
        }
        form.filters method="get" action="/ui/flags" {
            label { "Service "
                select name="service" {
                    option value="" { "all" }
                    @for s in &listing.services { option value=(s.name) selected[q.service() == Some(s.name.as_str())] { (s.name) } }
                }
            }
            label { "Environment "
                select name="environment" {
                    option value="" { "all" }
                    @for e in &envs { option value=(e) selected[q.environment() == Some(e.as_str())] { (e) } }
                }
            }
            button type="submit" { "Show" }
            @if q.filtered() { " " a href="/ui/flags" { "Clear" } }
        }
        div hx-ext="sse" sse-connect=(format!("/ui/stream/changes?{}", stream.finish())) {
            (table(&viewer, &q, &listing))
        }
    };
    Ok(view::page(Some(&viewer), "Flags", Nav::Flags, body))
}

/// `GET /ui/flags/table`: the table alone, for the live refresh.
pub async fn table_fragment(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<FlagsQuery>,
) -> UiResult {
    let listing = readable(&state, &viewer, &q).await?;
    Ok(table(&viewer, &q, &listing))
}

fn usage_cell(usage: &[FlagUsage], environment: &str) -> Markup {
    html! {
        td.small {
            @match usage.iter().find(|u| u.environment == environment) {
                Some(u) => { (u.yes) " on, " (u.no) " off; last " (time(u.hour)) }
                None => span.muted { "no evaluations" },
            }
        }
    }
}

/// `GET /ui/flags/{service}/{name}`.
pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((service, name)): Path<(String, String)>,
) -> UiResult {
    ops::require_read(&viewer.grant, &service)?;
    let flag = state
        .store
        .get_flag(&service, &name)
        .await?
        .ok_or_else(|| {
            UiError::not_found(format!(
                "service '{service}' has no flag named '{name}'; the flags page lists them"
            ))
        })?;
    let pipeline = state
        .store
        .get_service(&service)
        .await?
        .map(|s| s.environments)
        .unwrap_or_default();
    let envs = environments(&flag, &pipeline, None);
    let usage = crate::flags::usage::of_flag(&state, &service, &name).await?;
    let query = ChangeQuery {
        service: Some(service.clone()),
        kind: Some(ChangeKind::Flag),
        limit: 200,
        ..ChangeQuery::default()
    };
    let mut changes = state.store.list_changes(&query).await?;
    changes.retain(|c| {
        c.metadata.get("flag").and_then(|v| v.as_str()) == Some(name.as_str())
            && viewer.allows(
                ScopeName::Read,
                c.service.as_deref(),
                c.environment.as_deref(),
            )
    });
    changes.truncate(RECENT_CHANGES);
    let all_changes = format!(
        "/ui/changes?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("service", &service)
            .append_pair("kind", ChangeKind::Flag.as_str())
            .finish()
    );
    let body = html! {
        h1 { (flag.name) }
        p { "A flag of " a href=(format!("/ui/services/{}", flag.service)) { (flag.service) } "." }
        @if let Some(at) = flag.archived_at {
            p.notice role="status" {
                "Archived " (time(at)) ": SDKs no longer see it. Restore it with "
                code { "gantry flag restore " (flag.name) " --service " (flag.service) } "."
            }
        }
        dl.facts {
            dt { "Type" } dd { (flag.flag_type) }
            dt { "Owner" } dd { (flag.owner.as_deref().unwrap_or("—")) }
            dt { "Created" } dd { (time(flag.created_at)) " by " (flag.created_by) }
            dt { "Expected lifetime" } dd {
                @match edit::expected_lifetime_days(&flag.flag_type) {
                    Some(days) => { (days) " days" }
                    None => "for good",
                }
            }
            dt { "Version" } dd { (flag.version) }
        }
        @if let Some(d) = &flag.description {
            h2 { "Description" }
            p { (d) }
        }
        h2 #envs-h { "Environments" }
        @if envs.is_empty() {
            (empty("Not defined in any environment yet.", html! {
                "Turn it on with " code { "gantry flag enable " (flag.name) " --service " (flag.service) " --env stage" } "."
            }))
        } @else {
            div.scroll {
                table.grid aria-labelledby="envs-h" {
                    thead { tr {
                        th scope="col" { "Environment" } th scope="col" { "State" } th scope="col" { "Rules" }
                        th scope="col" { "Evaluations (90 days)" } th scope="col" { "Last changed" }
                        th scope="col" { span.sr-only { "Actions" } }
                    } }
                    tbody {
                        @for e in &envs {
                            tr id=(format!("env-{}", e.environment)) {
                                th scope="row" { (e.environment) }
                                (state_cells(e))
                                (usage_cell(&usage, &e.environment))
                                (changed_cell(e))
                                td { (action(&viewer, &flag, e, &Back::Flag)) }
                            }
                        }
                    }
                }
            }
            h2 { "Definitions" }
            @for e in &envs {
                @if let Ok(Some(d)) = &e.definition {
                    details {
                        summary { (e.environment) }
                        pre.output { (serde_json::to_string_pretty(d).unwrap_or_default()) }
                    }
                }
            }
        }
        h2 #changes-h { "Recent changes" }
        @if changes.is_empty() {
            p.muted { "No change of this flag is recorded yet." }
        } @else {
            div.scroll {
                table.grid.changes aria-labelledby="changes-h" {
                    (super::changes::head())
                    tbody { @for c in &changes { (super::changes::row(c)) } }
                }
            }
        }
        p { a href=(all_changes) { "Every flag change of " (flag.service) } }
    };
    Ok(view::page(Some(&viewer), &flag.name, Nav::Flags, body))
}

#[derive(Debug, Default, Deserialize)]
pub struct SwitchForm {
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
    /// `flag`: back to the flag's page; else the list, with its filters.
    back: Option<String>,
    filter_service: Option<String>,
    filter_environment: Option<String>,
}

/// `POST /ui/flags/{service}/{name}/environments/{env}/{enable|disable}`: what the API's
/// enable and disable do, recorded with `via = dashboard`.
pub async fn switch(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path((service, name, env, verb)): Path<(String, String, String, String)>,
    axum::Form(form): axum::Form<SwitchForm>,
) -> Result<Response, UiError> {
    check_post(&viewer, &headers, form.csrf.as_deref())?;
    let edit = match verb.as_str() {
        "enable" => Edit::Enable,
        "disable" => Edit::Disable,
        other => {
            return Err(UiError::not_found(format!(
                "a flag can be enabled or disabled here, not '{other}'"
            )))
        }
    };
    viewer.require(ScopeName::Flags, Some(&service), Some(&env))?;
    let actor = ops::Actor {
        name: &viewer.grant.token_name,
        if_match: None,
        note: None,
    };
    ops::change_environment_via(
        &state,
        &service,
        &name,
        &env,
        &EnvChange::Edit(edit),
        &actor,
        "dashboard",
    )
    .await?;
    let to = if form.back.as_deref() == Some("flag") {
        format!("/ui/flags/{service}/{name}")
    } else {
        FlagsQuery {
            service: form.filter_service,
            environment: form.filter_environment,
        }
        .href()
    };
    Ok(Redirect::to(&to).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_say_who_it_is_on_for() {
        let d: EnvironmentDefinition = serde_json::from_value(serde_json::json!({
            "enabled": true,
            "strategies": [
                {"name": "flexibleRollout", "parameters": {"rollout": "25"}},
                {"name": "default", "constraints": [{"contextName": "country", "operator": "IN", "values": ["NO"]}]},
            ],
            "variants": [{"name": "blue", "weight": 1000}],
            "dependencies": [{"feature": "parent"}],
        }))
        .unwrap();
        assert_eq!(
            rules(&d),
            "rollout 25%, everyone (targeted), variants blue, needs parent"
        );
        assert_eq!(rules(&EnvironmentDefinition::default()), "everyone");
    }

    #[test]
    fn the_list_keeps_its_filters() {
        let q = FlagsQuery {
            service: Some("shop".into()),
            environment: Some(" ".into()),
        };
        assert_eq!(q.href(), "/ui/flags?service=shop");
        assert_eq!(FlagsQuery::default().href(), "/ui/flags");
        let odd = FlagsQuery {
            service: Some("a b\r\n".into()),
            environment: None,
        };
        assert_eq!(odd.href(), "/ui/flags?service=a+b");
    }
}
