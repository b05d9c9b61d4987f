//! The dashboard's flags and migrations pages without a browser: what each token sees and
//! may do, CSRF, forged posts beyond a token's scopes, the change a flip records, the HTML
//! 404, and escaping. Requests go through the whole application, as a browser's would.
#![cfg(feature = "dashboard")]

use axum::http::{header, StatusCode};
use chrono::Utc;
use gantry_core::migrate_job::{Job, JobState};
use gantry_core::{Change, ChangeKind, ChangeQuery};
use gantry_server::config::MigrateDatabase;
use gantry_server::ServerConfig;

mod common;

use common::{assert_html_is_policy_clean, env_with, Env, ORIGIN};

const FLAG: &str = "/ui/flags/shop/checkout-v2";

/// A server whose `[migrate.databases]` has `shop` (service shop, in prod).
async fn env() -> Env {
    let mut config = ServerConfig::default();
    config.migrate.databases.insert(
        "shop".into(),
        MigrateDatabase {
            url_env: "GANTRY_TEST_DASHBOARD_FLAGS_NO_URL".into(),
            services: vec!["shop".into()],
            environment: "prod".into(),
            throttle: Vec::new(),
            expand_table: "gantry_schema_expand".into(),
            contract_table: "gantry_schema_contract".into(),
        },
    );
    env_with(config).await
}

impl Env {
    /// Service `shop` (dev, stage, prod) with flag `checkout-v2`, on in stage, through the
    /// API. Returns the admin token's secret.
    async fn shop_flag(&self, description: &str) -> String {
        let admin = self.token("admin", "admin").await;
        let (status, body) = self
            .api(
                "POST",
                "/api/v1/services",
                &admin,
                serde_json::json!({"name": "shop", "environments": ["dev", "stage", "prod"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = self
            .api(
                "POST",
                "/api/v1/flags",
                &admin,
                serde_json::json!({
                    "service": "shop",
                    "name": "checkout-v2",
                    "type": "kill-switch",
                    "description": description,
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = self
            .api(
                "POST",
                "/api/v1/flags/shop/checkout-v2/environments/stage/enable",
                &admin,
                serde_json::json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        admin
    }

    /// Whether the flag is on in `env`.
    async fn enabled(&self, env: &str) -> bool {
        let flag = self
            .state
            .store
            .get_flag("shop", "checkout-v2")
            .await
            .unwrap()
            .unwrap();
        flag.environments.get(env).is_some_and(|e| {
            serde_json::from_str::<serde_json::Value>(&e.definition).unwrap()["enabled"] == true
        })
    }

    /// The flag changes of shop, newest first.
    async fn flag_changes(&self) -> Vec<Change> {
        self.state
            .store
            .list_changes(&ChangeQuery {
                service: Some("shop".into()),
                kind: Some(ChangeKind::Flag),
                limit: 100,
                ..ChangeQuery::default()
            })
            .await
            .unwrap()
    }

    /// A migration job of database shop submitted through the API, then marked `failed`
    /// with `error`, and log lines.
    async fn failed_job(&self, admin: &str, error: &str, lines: &[&str]) -> Job {
        let (status, body) = self
            .api(
                "POST",
                "/api/v1/migrate/jobs",
                admin,
                serde_json::json!({
                    "database": "shop",
                    "kind": "apply",
                    "spec": {
                        "phase": "expand",
                        "files": [{"path": "expand/0001_add_email.sql", "text": "ALTER TABLE users ADD COLUMN email text;"}],
                    },
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let job: Job = serde_json::from_str(&body).unwrap();
        let mut stored = self.job(job.id).await;
        stored.state = JobState::Failed;
        stored.error = Some(error.into());
        stored.started_at = Some(Utc::now());
        stored.finished_at = Some(Utc::now());
        self.state.store.update_migrate_job(&stored).await.unwrap();
        let now = Utc::now();
        let lines: Vec<_> = lines.iter().map(|l| (now, l.to_string())).collect();
        self.state
            .store
            .append_migrate_log(job.id, &lines)
            .await
            .unwrap();
        self.job(job.id).await
    }

    async fn job(&self, id: ulid::Ulid) -> Job {
        self.state.store.get_migrate_job(id).await.unwrap().unwrap()
    }

    async fn log(&self, id: ulid::Ulid) -> Vec<String> {
        self.state
            .store
            .migrate_log_after(id, 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.text)
            .collect()
    }
}

fn assert_html(headers: &axum::http::HeaderMap) {
    let kind = headers[header::CONTENT_TYPE].to_str().unwrap();
    assert!(kind.starts_with("text/html"), "{kind}");
}

#[tokio::test]
async fn flag_pages_render_for_an_admin() {
    let env = env().await;
    let admin = env.shop_flag("The new checkout").await;
    let cookie = env.sign_in(&admin).await;
    let (status, headers, body) = env.get("/ui/flags", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_html(&headers);
    assert_html_is_policy_clean(&body);
    assert!(body.contains("aria-current=\"page\">Flags"), "{body}");
    assert!(
        body.contains("href=\"/ui/flags/shop/checkout-v2\""),
        "{body}"
    );
    assert!(body.contains("kill-switch"), "the type: {body}");
    assert!(body.contains("<table class=\"grid\""), "{body}");
    assert!(body.contains("<div class=\"scroll\""), "{body}");
    // One row per environment: on in stage (turn off), off in dev and prod (turn on).
    assert_eq!(body.matches("id=\"flag-shop-checkout-v2-").count(), 3);
    assert_eq!(body.matches(">Turn off<").count(), 1, "{body}");
    assert_eq!(body.matches(">Turn on<").count(), 2, "{body}");
    // The stream starts after the last change the page read, and carries flag changes only.
    assert!(
        body.contains("sse-connect=\"/ui/stream/changes?after="),
        "{body}"
    );
    assert!(body.contains("&amp;kind=flag\""), "{body}");
    // Filters live in the URL.
    let (status, _, body) = env
        .get("/ui/flags?service=shop&environment=stage", &cookie)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.matches("id=\"flag-shop-checkout-v2-").count(), 1);
    assert!(
        body.contains("id=\"flag-shop-checkout-v2-stage\""),
        "{body}"
    );
    let (status, _, body) = env.get("/ui/flags?environment=qa", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("No flag matches these filters"), "{body}");
    // The live refresh's fragment.
    let (status, _, body) = env.get("/ui/flags/table?service=shop", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("<div id=\"flags-table\""), "{body}");
    // The flag's page: environments, definitions, its changes, usage.
    let (status, headers, body) = env.get(FLAG, &cookie).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_html(&headers);
    assert_html_is_policy_clean(&body);
    assert!(body.contains("The new checkout"), "{body}");
    assert!(body.contains("id=\"env-stage\""), "{body}");
    assert!(body.contains("checkout-v2: enabled in stage"), "{body}");
    assert!(
        body.contains("checkout-v2: created (kill-switch)"),
        "{body}"
    );
    assert!(body.contains("no evaluations"), "{body}");
    assert!(body.contains("<time datetime="), "{body}");
}

#[tokio::test]
async fn flag_pages_say_what_to_do_when_empty() {
    let env = env().await;
    let admin = env.token("admin", "admin").await;
    let cookie = env.sign_in(&admin).await;
    let (status, _, body) = env.get("/ui/flags", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("No flags yet."), "{body}");
    assert!(body.contains("gantry flag create"), "{body}");
    let (status, _, body) = env.get("/ui/migrations", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("No migration jobs yet."), "{body}");
    assert!(body.contains("--via-server"), "{body}");
    assert_html_is_policy_clean(&body);
}

#[tokio::test]
async fn turning_a_flag_on_and_off_records_a_change_via_the_dashboard() {
    let env = env().await;
    env.shop_flag("").await;
    // A token that may flip flags of shop in prod only.
    let prod = env.token("prod-flagger", "read,flags:shop@prod").await;
    let cookie = env.sign_in(&prod).await;
    let (_, _, body) = env.get("/ui/flags", &cookie).await;
    assert_eq!(body.matches(">Turn on<").count(), 1, "prod only: {body}");
    assert_eq!(body.matches(">Turn off<").count(), 0, "{body}");
    let csrf = env.csrf(&cookie).await;
    let before = env.flag_changes().await.len();
    let (status, headers, body) = env
        .post(
            "/ui/flags/shop/checkout-v2/environments/prod/enable",
            &cookie,
            Some(ORIGIN),
            &[
                ("_csrf", &csrf),
                ("back", "list"),
                ("filter_service", "shop"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers[header::LOCATION], "/ui/flags?service=shop");
    assert!(env.enabled("prod").await);
    let changes = env.flag_changes().await;
    assert_eq!(changes.len(), before + 1);
    let change = &changes[0];
    assert_eq!(change.metadata["via"], "dashboard");
    assert_eq!(change.metadata["flag"], "checkout-v2");
    assert_eq!(change.actor, "prod-flagger");
    assert_eq!(change.environment.as_deref(), Some("prod"));
    assert_eq!(change.summary, "checkout-v2: enabled in prod");
    // Off again, from the flag's page.
    let (status, headers, _) = env
        .post(
            "/ui/flags/shop/checkout-v2/environments/prod/disable",
            &cookie,
            Some(ORIGIN),
            &[("_csrf", &csrf), ("back", "flag")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], FLAG);
    assert!(!env.enabled("prod").await);
    let changes = env.flag_changes().await;
    assert_eq!(changes[0].metadata["via"], "dashboard");
    assert_eq!(changes[0].summary, "checkout-v2: disabled in prod");
    // The API's own flips say nothing of a dashboard.
    let api_change = changes
        .iter()
        .find(|c| c.summary == "checkout-v2: enabled in stage")
        .unwrap();
    assert!(!api_change.metadata.contains_key("via"));
    // Beyond its scope (stage): 403, nothing done.
    let (status, _, body) = env
        .act(
            "/ui/flags/shop/checkout-v2/environments/stage/disable",
            &cookie,
            &csrf,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("flags:shop@stage"), "{body}");
    assert!(env.enabled("stage").await);
    assert_eq!(env.flag_changes().await.len(), before + 2);
}

#[tokio::test]
async fn a_read_only_token_sees_no_flag_actions_and_cannot_forge_one() {
    let env = env().await;
    env.shop_flag("").await;
    let reader = env.token("reader", "read").await;
    let cookie = env.sign_in(&reader).await;
    let (status, _, body) = env.get("/ui/flags", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("checkout-v2"), "{body}");
    assert!(
        !body.contains("Turn on") && !body.contains("Turn off"),
        "{body}"
    );
    assert!(!body.contains("/environments/"), "no action forms: {body}");
    let (status, _, body) = env.get(FLAG, &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !body.contains("Turn on") && !body.contains("Turn off"),
        "{body}"
    );
    let csrf = env.csrf(&cookie).await;
    let before = env.flag_changes().await.len();
    for (env_name, verb) in [("prod", "enable"), ("stage", "disable")] {
        let (status, headers, body) = env
            .act(
                &format!("/ui/flags/shop/checkout-v2/environments/{env_name}/{verb}"),
                &cookie,
                &csrf,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_html(&headers);
        assert!(body.contains("Not allowed"), "{body}");
    }
    assert!(!env.enabled("prod").await);
    assert!(env.enabled("stage").await);
    assert_eq!(env.flag_changes().await.len(), before, "nothing recorded");
    // A token without read on shop does not see its flags at all.
    let other = env.token("other", "read:billing").await;
    let cookie = env.sign_in(&other).await;
    let (status, _, body) = env.get("/ui/flags", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("id=\"flag-shop-checkout-v2-"), "{body}");
    assert!(
        !body.contains("href=\"/ui/flags/shop/checkout-v2\""),
        "{body}"
    );
    assert!(
        body.contains("Your token reads none of the services"),
        "{body}"
    );
    let (status, _, _) = env.get(FLAG, &cookie).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn flag_posts_need_the_csrf_value_and_the_origin() {
    let env = env().await;
    let admin = env.shop_flag("").await;
    let cookie = env.sign_in(&admin).await;
    let csrf = env.csrf(&cookie).await;
    let path = "/ui/flags/shop/checkout-v2/environments/prod/enable";
    let before = env.flag_changes().await.len();
    let (status, _, body) = env.post(path, &cookie, Some(ORIGIN), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF value: {body}");
    assert!(body.contains("CSRF"), "{body}");
    let (status, _, _) = env
        .post(path, &cookie, Some(ORIGIN), &[("_csrf", "forged")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = env
        .post(
            path,
            &cookie,
            Some("http://evil.example"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another origin");
    assert!(!env.enabled("prod").await, "nothing was done");
    assert_eq!(env.flag_changes().await.len(), before);
}

#[tokio::test]
async fn html_in_a_flag_description_is_escaped() {
    let env = env().await;
    let nasty = "<script>alert(1)</script> <b onmouseover=x>bold</b>";
    let admin = env.shop_flag(nasty).await;
    let cookie = env.sign_in(&admin).await;
    let (status, _, body) = env.get(FLAG, &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(!body.contains("<b onmouseover"), "{body}");
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{body}"
    );
    assert_html_is_policy_clean(&body);
}

#[tokio::test]
async fn unknown_flags_and_jobs_get_an_html_404() {
    let env = env().await;
    let admin = env.shop_flag("").await;
    let cookie = env.sign_in(&admin).await;
    let csrf = env.csrf(&cookie).await;
    for path in [
        "/ui/flags/shop/nope",
        "/ui/flags/nope/nope",
        "/ui/migrations/01JDQ4Y3V7W2J8X1B2C3D4E5F6",
        "/ui/migrations/01JDQ4Y3V7W2J8X1B2C3D4E5F6/live",
    ] {
        let (status, headers, body) = env.get(path, &cookie).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_html(&headers);
        assert!(body.contains("Not found"), "{path}: {body}");
    }
    for path in [
        "/ui/flags/shop/nope/environments/prod/enable",
        "/ui/flags/shop/checkout-v2/environments/prod/explode",
        "/ui/migrations/01JDQ4Y3V7W2J8X1B2C3D4E5F6/pause",
    ] {
        let (status, headers, body) = env.act(path, &cookie, &csrf).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_html(&headers);
    }
    let (status, _, body) = env.get("/ui/migrations/not-an-id", &cookie).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("not a job id"), "{body}");
}

#[tokio::test]
async fn migration_pages_render_and_a_job_is_controlled_via_the_dashboard() {
    let env = env().await;
    let admin = env.token("admin", "admin").await;
    let job = env
        .failed_job(
            &admin,
            "statement 1 failed: <b>boom</b>",
            &[
                "applying expand/0001_add_email.sql",
                "<script>alert(1)</script>",
            ],
        )
        .await;
    let cookie = env.sign_in(&admin).await;
    let (status, headers, body) = env.get("/ui/migrations", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_html(&headers);
    assert_html_is_policy_clean(&body);
    assert!(body.contains("aria-current=\"page\">Migrations"), "{body}");
    assert!(body.contains(&format!("id=\"job-{}\"", job.id)), "{body}");
    assert!(body.contains(">failed<"), "the state's word: {body}");
    assert!(body.contains(">expand<"), "the phase: {body}");
    assert!(body.contains("by admin"), "who: {body}");
    // The contract gate of the configured database: shop never deployed in prod.
    assert!(body.contains("gate closed"), "{body}");
    assert!(body.contains("never deployed"), "{body}");
    // Nothing runs: no polling, only the change stream's refresh.
    assert!(!body.contains("every 5s"), "{body}");
    let (status, _, body) = env.get("/ui/migrations?state=running", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("No job matches these filters"), "{body}");
    let (status, _, _) = env.get("/ui/migrations?state=sleeping", &cookie).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, body) = env.get("/ui/migrations/table?database=shop", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("<div id=\"jobs-table\""), "{body}");

    let path = format!("/ui/migrations/{}", job.id);
    let (status, _, body) = env.get(&path, &cookie).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_html_is_policy_clean(&body);
    assert!(
        body.contains("applying expand/0001_add_email.sql"),
        "{body}"
    );
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{body}"
    );
    assert!(!body.contains("<b>boom"), "{body}");
    assert!(body.contains("&lt;b&gt;boom&lt;/b&gt;"), "{body}");
    // A failed job may be retried or aborted, not paused or resumed.
    assert!(body.contains(&format!("action=\"{path}/retry\"")), "{body}");
    assert!(body.contains(&format!("action=\"{path}/abort\"")), "{body}");
    assert!(
        !body.contains(&format!("action=\"{path}/pause\"")),
        "{body}"
    );
    assert!(!body.contains("hx-trigger=\"every"), "an ended job: {body}");

    let csrf = env.csrf(&cookie).await;
    let (status, headers, body) = env.act(&format!("{path}/retry"), &cookie, &csrf).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers[header::LOCATION], path.as_str());
    let retried = env.job(job.id).await;
    assert_eq!(retried.state, JobState::Queued);
    assert_eq!(retried.spec.files.len(), 1, "the files it holds are kept");
    assert!(
        env.log(job.id)
            .await
            .contains(&"retry requested by admin (via dashboard)".to_string()),
        "{:?}",
        env.log(job.id).await
    );
    // Queued: the page follows it, and pause is offered.
    let (_, _, body) = env.get(&path, &cookie).await;
    assert!(body.contains("hx-trigger=\"every 5s\""), "{body}");
    assert!(body.contains(&format!("action=\"{path}/pause\"")), "{body}");
    let (status, _, body) = env.get(&format!("{path}/live"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("<div id=\"job-live\""), "{body}");
    let (_, _, body) = env.get("/ui/migrations", &cookie).await;
    assert!(
        body.contains("every 5s"),
        "a queued job is followed: {body}"
    );
    // A request the job's state refuses is said, and changes nothing.
    let (status, _, body) = env.act(&format!("{path}/resume"), &cookie, &csrf).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("only a paused job can be resumed"), "{body}");
    // Abort it: the job and its change end.
    let (status, _, _) = env.act(&format!("{path}/abort"), &cookie, &csrf).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let aborted = env.job(job.id).await;
    assert_eq!(aborted.state, JobState::Aborted);
    let change = env
        .state
        .store
        .get_change(aborted.change_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(change.status.as_str(), "cancelled");
}

#[tokio::test]
async fn a_read_only_token_cannot_control_a_job() {
    let env = env().await;
    let admin = env.token("admin", "admin").await;
    let job = env.failed_job(&admin, "boom", &["line"]).await;
    let path = format!("/ui/migrations/{}", job.id);
    // Needs migrate on shop in prod: read, or migrate elsewhere, is not enough.
    for (name, scopes) in [("reader", "read"), ("stager", "read,migrate:shop@stage")] {
        let secret = env.token(name, scopes).await;
        let cookie = env.sign_in(&secret).await;
        let (status, _, body) = env.get(&path, &cookie).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            !body.contains(&format!("action=\"{path}/")),
            "{name}: no action buttons: {body}"
        );
        assert!(!body.contains("Retry"), "{body}");
        let csrf = env.csrf(&cookie).await;
        for action in ["retry", "abort"] {
            let (status, headers, body) =
                env.act(&format!("{path}/{action}"), &cookie, &csrf).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{name} {action}: {body}");
            assert_html(&headers);
            assert!(body.contains("migrate:shop@prod"), "{body}");
        }
    }
    let after = env.job(job.id).await;
    assert_eq!(after, job, "nothing was done");
    assert_eq!(env.log(job.id).await.len(), 3, "nothing was logged");
    // Without the CSRF value, even an admin is refused.
    let cookie = env.sign_in(&admin).await;
    let (status, _, body) = env
        .post(&format!("{path}/retry"), &cookie, Some(ORIGIN), &[])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("CSRF"), "{body}");
    assert_eq!(env.job(job.id).await.state, JobState::Failed);
    // A token that reads nothing of shop does not see the job.
    let other = env.token("other", "read:billing").await;
    let cookie = env.sign_in(&other).await;
    let (_, _, body) = env.get("/ui/migrations", &cookie).await;
    assert!(!body.contains(&job.id.to_string()), "{body}");
    assert!(
        !body.contains("gate closed"),
        "nor its database's gate: {body}"
    );
    let (status, _, _) = env.get(&path, &cookie).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_long_job_log_shows_its_tail() {
    let env = env().await;
    let admin = env.token("admin", "admin").await;
    let lines: Vec<String> = (0..1205)
        .map(|i| format!("statement {i:04} done"))
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let job = env.failed_job(&admin, "boom", &lines).await;
    let cookie = env.sign_in(&admin).await;
    let (status, _, body) = env
        .get(&format!("/ui/migrations/{}", job.id), &cookie)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("statement 1204 done"), "the newest line");
    assert!(body.contains("statement 1005 done"));
    assert!(!body.contains("statement 1004 done"), "200 lines only");
    assert!(!body.contains("queued by admin"), "the oldest are left out");
    assert!(body.contains("The last 200 lines"), "and it says so");
    assert!(body.contains(&format!("gantry migrate watch {}", job.id)));
}
