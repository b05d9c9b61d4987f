//! The dashboard without a browser: sign-in and sessions, CSRF and Origin checks, scopes,
//! escaping, a 1,000-host rollout, the HTML 404, the security headers, and the streams'
//! end on sign-out. Requests go through the whole application, as a browser's would.
#![cfg(feature = "dashboard")]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::Utc;
use gantry_core::ship::{Build, HostFacts, HostRelease};
use gantry_core::ChangeKind;
use gantry_server::ServerConfig;
use tower::ServiceExt;

mod common;

use common::{assert_html_is_policy_clean, env, env_with, Env, HOST, ORIGIN};

impl Env {
    /// Deploys build `id` of shop to stage through the dashboard's form.
    async fn deploy(
        &self,
        cookie: &str,
        csrf: &str,
        id: &str,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let form = [
            ("_csrf", csrf),
            ("action", "deploy"),
            ("environment", "stage"),
            ("build", id),
        ];
        self.post("/ui/services/shop/rollouts", cookie, Some(ORIGIN), &form)
            .await
    }

    async fn rollouts(&self) -> Vec<gantry_core::ship::Rollout> {
        self.state
            .store
            .list_rollouts(None, None, false, 10)
            .await
            .unwrap()
    }

    /// A request for a dashboard stream with this cookie.
    fn stream(cookie: &str) -> Request<Body> {
        Request::builder()
            .uri("/ui/stream/changes")
            .header(header::HOST, HOST)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap()
    }

    /// A service `shop` (dev, stage, prod), a build, and `n` online hosts in `env`.
    async fn shop(&self, env: &str, n: usize) -> Build {
        let now = Utc::now();
        self.state
            .store
            .create_service(
                &gantry_core::NewService {
                    name: "shop".into(),
                    environments: vec!["dev".into(), "stage".into(), "prod".into()],
                },
                now,
            )
            .await
            .unwrap();
        let build = Build {
            id: ulid::Ulid::new(),
            service: "shop".into(),
            version: "1.4.0".into(),
            sha256: "0".repeat(64),
            size: 1,
            url: None,
            commit: Some("8be41d0".into()),
            commit_time: None,
            created_by: "ci".into(),
            created_at: now,
        };
        self.state.store.insert_build(&build).await.unwrap();
        for i in 0..n {
            let name = format!("{env}-{i:04}");
            self.state
                .store
                .enroll_host(&name, env, &[], now)
                .await
                .unwrap();
            self.state
                .store
                .host_seen(
                    &name,
                    &HostFacts {
                        os: "linux".into(),
                        arch: "x86_64".into(),
                        agent_version: "0.1.0".into(),
                        roles: Vec::new(),
                    },
                    &BTreeMap::<String, HostRelease>::new(),
                    now,
                )
                .await
                .unwrap();
        }
        build
    }
}

#[tokio::test]
async fn signed_out_pages_send_to_sign_in_and_back() {
    let env = env().await;
    let (status, headers, _) = env.get("/ui/hosts?environment=prod", "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers[header::LOCATION],
        "/ui/sign-in?next=%2Fui%2Fhosts%3Fenvironment%3Dprod"
    );
    let (status, headers, body) = env.get("/ui/sign-in?next=/ui/hosts", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("API token"), "{body}");
    assert!(
        body.contains("admin.token"),
        "it says where the admin token is: {body}"
    );
    assert_html_is_policy_clean(&body);
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert_eq!(
        csp,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn sign_in_checks_origin_and_token_and_sets_a_strict_cookie() {
    let env = env().await;
    let admin = env.token("admin", "admin").await;
    // No Origin: refused (a form on another site cannot sign someone in).
    let (status, _, _) = env
        .post("/ui/sign-in", "", None, &[("token", &admin)])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = env
        .post(
            "/ui/sign-in",
            "",
            Some("http://evil.example"),
            &[("token", &admin)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A wrong token: the form again, saying so, and no cookie.
    let (status, headers, body) = env
        .post("/ui/sign-in", "", Some(ORIGIN), &[("token", "gantry_nope")])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("not valid"), "{body}");
    assert!(!headers.contains_key(header::SET_COOKIE));
    // The right one.
    let (status, headers, _) = env
        .post(
            "/ui/sign-in",
            "",
            Some(ORIGIN),
            &[("token", &admin), ("next", "//evil.example/")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/", "next stays on this server");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("gantry="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP by default: {cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    // The store keeps the digest of the id, never the id.
    let id = pair.split_once('=').unwrap().1;
    let sessions = env.state.store.list_sessions().await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].id_digest, gantry_core::token::digest(id));
    assert_ne!(sessions[0].id_digest, id);
    let (status, _, body) = env.get("/", pair).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Signed in as"), "{body}");
    assert_html_is_policy_clean(&body);
    // The cookie counts on dashboard routes only: the API still wants a token.
    let (status, _, _) = env.get("/api/v1/changes", pair).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = env.get("/render?target=a", pair).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn secure_cookies_are_host_prefixed() {
    let mut config = ServerConfig::default();
    config.dashboard.secure_cookies = gantry_server::config::SecureCookies::Always;
    let env = env_with(config).await;
    let admin = env.token("admin", "admin").await;
    let (_, headers, _) = env
        .post("/ui/sign-in", "", Some(ORIGIN), &[("token", &admin)])
        .await;
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("__Host-gantry="), "{cookie}");
    assert!(
        cookie.contains("; Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
}

#[tokio::test]
async fn an_expired_session_signs_in_again_and_comes_back() {
    let env = env().await;
    let admin = env.token("admin", "admin").await;
    let cookie = env.sign_in(&admin).await;
    let id = cookie.split_once('=').unwrap().1;
    let digest = gantry_core::token::digest(id);
    let past = Utc::now() - chrono::Duration::minutes(1);
    env.state
        .store
        .touch_session(&digest, past - chrono::Duration::hours(12), past)
        .await
        .unwrap();
    let (status, headers, _) = env.get("/ui/changes", &cookie).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers[header::LOCATION],
        "/ui/sign-in?next=%2Fui%2Fchanges&expired=1"
    );
    assert!(env
        .state
        .store
        .get_session(&digest)
        .await
        .unwrap()
        .is_none());
    let (_, _, body) = env
        .get("/ui/sign-in?next=%2Fui%2Fchanges&expired=1", "")
        .await;
    assert!(body.contains("Your session has ended"), "{body}");
    // Revoking the token ends its sessions at once.
    let cookie = env.sign_in(&admin).await;
    assert_eq!(env.get("/", &cookie).await.0, StatusCode::OK);
    env.state
        .store
        .revoke_token("admin", Utc::now())
        .await
        .unwrap();
    assert_eq!(env.get("/", &cookie).await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn posts_need_the_csrf_value_and_the_origin() {
    let env = env().await;
    let admin = env.token("admin", "admin").await;
    env.shop("prod", 1).await;
    let cookie = env.sign_in(&admin).await;
    let csrf = env.csrf(&cookie).await;
    let path = "/ui/hosts/prod-0000/maintenance";
    let in_maintenance = || async {
        env.state
            .store
            .get_host("prod-0000")
            .await
            .unwrap()
            .unwrap()
            .maintenance
    };
    let (status, _, body) = env
        .post(path, &cookie, Some(ORIGIN), &[("on", "true")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF value: {body}");
    assert!(body.contains("CSRF"), "{body}");
    let (status, _, _) = env
        .post(
            path,
            &cookie,
            Some(ORIGIN),
            &[("on", "true"), ("_csrf", "forged")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = env
        .post(
            path,
            &cookie,
            Some("http://evil.example"),
            &[("on", "true"), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another origin");
    let (status, _, _) = env
        .post(path, &cookie, None, &[("on", "true"), ("_csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no origin at all");
    assert!(!in_maintenance().await, "nothing was done");
    let (status, headers, _) = env
        .post(
            path,
            &cookie,
            Some(ORIGIN),
            &[("on", "true"), ("_csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/ui/hosts?environment=prod");
    assert!(in_maintenance().await);
    // htmx sends the value as a header and gets the new row back.
    let request = Request::builder()
        .method("POST")
        .uri(path)
        .header(header::HOST, HOST)
        .header(header::COOKIE, &cookie)
        .header("Sec-Fetch-Site", "same-origin")
        .header("HX-Request", "true")
        .header("X-CSRF-Token", &csrf)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("on=false"))
        .unwrap();
    let (status, _, body) = env.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("<tr id=\"host-prod-0000\""), "{body}");
    assert!(!in_maintenance().await);
}

#[tokio::test]
async fn what_a_person_sees_and_does_follows_the_tokens_scopes() {
    let env = env().await;
    let build = env.shop("stage", 2).await;
    let reader = env.token("reader", "read").await;
    let stager = env.token("stager", "read,deploy:shop@stage").await;
    let cookie = env.sign_in(&reader).await;
    let (status, _, body) = env.get("/ui/services/shop", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        !body.contains("Deploy…"),
        "a read token sees no deploy button"
    );
    assert!(!body.contains("/ui/tokens"), "nor the tokens page");
    let csrf = env.csrf(&cookie).await;
    let id = build.id.to_string();
    let (status, _, body) = env.deploy(&cookie, &csrf, &id).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("deploy:shop@stage"), "{body}");
    assert!(env.rollouts().await.is_empty());
    let (status, _, _) = env.get("/ui/tokens", &cookie).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // deploy:shop@stage: the button for stage only, and the deploy works, via dashboard.
    let cookie = env.sign_in(&stager).await;
    let (_, _, body) = env.get("/ui/services/shop", &cookie).await;
    assert_eq!(body.matches("Deploy…").count(), 1, "{body}");
    let (status, _, body) = env
        .get(
            &format!("/ui/services/shop/confirm?action=deploy&environment=stage&build={id}"),
            &cookie,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("Hosts per wave") && body.contains("stage-0000"),
        "{body}"
    );
    assert!(env.rollouts().await.is_empty(), "confirming starts nothing");
    let (status, _, _) = env
        .get(
            &format!("/ui/services/shop/confirm?action=deploy&environment=prod&build={id}"),
            &cookie,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let csrf = env.csrf(&cookie).await;
    let (status, headers, body) = env.deploy(&cookie, &csrf, &id).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let location = headers[header::LOCATION].to_str().unwrap().to_string();
    assert!(location.starts_with("/ui/rollouts/"), "{location}");
    let rollouts = env.rollouts().await;
    assert_eq!(rollouts.len(), 1);
    let change = env
        .state
        .store
        .get_change(rollouts[0].change_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(change.metadata["via"], "dashboard");
    assert_eq!(change.actor, "stager");
    let (status, _, body) = env.get(&location, &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Abort"), "{body}");
    assert_html_is_policy_clean(&body);
    // Aborting it records who, through the dashboard.
    let abort = format!("{location}/abort");
    let (status, _, _) = env.act(&abort, &cookie, &csrf).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let r = env
        .state
        .store
        .get_rollout(rollouts[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.control.as_deref(), Some("abort:stager (dashboard)"));
}

#[tokio::test]
async fn summaries_and_output_are_shown_as_text() {
    let env = env().await;
    let admin = env.token("admin", "admin").await;
    let cookie = env.sign_in(&admin).await;
    let nasty = "<script>alert(1)</script> <b onmouseover=x>\u{1b}[31mred\u{1b}[0m";
    let change = env.change(nasty, "shop", "prod").await;
    for path in [
        "/ui/changes".to_string(),
        format!("/ui/changes/{}", change.id),
    ] {
        let (status, _, body) = env.get(&path, &cookie).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!body.contains("<script>alert"), "{path}: {body}");
        assert!(!body.contains("<b onmouseover"), "{path}");
        assert!(
            body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}: {body}"
        );
        assert_html_is_policy_clean(&body);
    }
}

#[tokio::test]
async fn a_thousand_host_rollout_is_paginated() {
    let env = env().await;
    let admin = env.token("admin", "admin").await;
    let build = env.shop("prod", 1000).await;
    let rollout = gantry_server::ship::rollouts::start(
        &env.state,
        &gantry_server::ship::rollouts::Actor::token("admin"),
        gantry_core::ship::NewRollout {
            service: "shop".into(),
            environment: "prod".into(),
            build: Some(build.id.to_string()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // One host's hook printed HTML and terminal colours: shown as text.
    let mut tasks = env.state.store.rollout_tasks(rollout.id).await.unwrap();
    tasks.sort_by(|a, b| (a.wave, &a.host).cmp(&(b.wave, &b.host)));
    let mut task = tasks[0].clone();
    task.state = gantry_core::ship::TaskState::Running;
    task.step = Some("restart".into());
    task.output = "<script>alert(1)</script>\n\u{1b}[31mred\u{1b}[0m done".into();
    task.updated_at = Utc::now();
    env.state
        .store
        .save_rollout(&rollout, &[&task], &[], None)
        .await
        .unwrap();
    let cookie = env.sign_in(&admin).await;
    let started = Instant::now();
    let (status, _, body) = env
        .get(&format!("/ui/rollouts/{}", rollout.id), &cookie)
        .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body.matches("<tr id=\"task-").count(),
        200,
        "one page of hosts"
    );
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;\nred done"),
        "hook output as text"
    );
    assert!(
        !body.contains('\u{1b}'),
        "no terminal escapes reach the page"
    );
    assert!(
        body.contains("page 1 of 5"),
        "{}",
        &body[..2000.min(body.len())]
    );
    eprintln!("rendered a 1,000-host rollout page in {took:?}");
    let (status, _, body) = env
        .get(&format!("/ui/rollouts/{}?page=4", rollout.id), &cookie)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.matches("<tr id=\"task-").count(), 200);
    assert!(body.contains("prod-0999"));
    let (status, _, _) = env
        .get(&format!("/ui/rollouts/{}?page=5", rollout.id), &cookie)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_things_get_an_html_404() {
    let env = env().await;
    let admin = env.token("admin", "admin").await;
    let cookie = env.sign_in(&admin).await;
    for path in [
        "/ui/services/nope",
        "/ui/rollouts/01JDQ4Y3V7W2J8X1B2C3D4E5F6",
        "/ui/nothing-here",
    ] {
        let (status, headers, body) = env.get(path, &cookie).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        assert!(body.contains("Not found"), "{path}: {body}");
    }
    let (status, _, body) = env.get("/ui/rollouts/not-an-id", &cookie).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("not a rollout id"), "{body}");
}

#[tokio::test]
async fn a_bad_target_shows_the_render_engines_message() {
    let env = env().await;
    let admin = env.token("admin", "admin").await;
    let cookie = env.sign_in(&admin).await;
    let (status, _, body) = env.get("/ui/metrics?target=sumSeries(a.b", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("class=\"error\""), "{body}");
    assert!(
        body.contains("sumSeries(a.b"),
        "the message names the target: {body}"
    );
    let (status, _, body) = env
        .get(
            "/ui/metrics/data?target=sumSeries(a.b&from=-1h&until=now",
            &cookie,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("sumSeries(a.b"),
        "{body}"
    );
}

#[tokio::test]
async fn assets_have_hashed_names_and_long_lives() {
    let env = env().await;
    for asset in gantry_web_assets::all() {
        let (status, headers, _) = env.get(&format!("/assets/{}", asset.file), "").await;
        assert_eq!(status, StatusCode::OK, "{}", asset.file);
        assert_eq!(
            headers[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(headers[header::CONTENT_TYPE], asset.content_type);
    }
    let (status, _, _) = env.get("/assets/htmx.js", "").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "only hashed names are served"
    );
}

#[tokio::test]
async fn tokens_page_shows_a_new_secret_once() {
    let env = env().await;
    let admin = env.token("admin", "admin").await;
    let cookie = env.sign_in(&admin).await;
    let csrf = env.csrf(&cookie).await;
    let (status, _, body) = env
        .post(
            "/ui/tokens",
            &cookie,
            Some(ORIGIN),
            &[
                ("_csrf", &csrf),
                ("name", "ci"),
                ("scopes", "read,deploy:shop@stage"),
                ("expires_in", "30d"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let at = body.find("id=\"new-secret\"").unwrap();
    let secret = body[at..]
        .split("value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(secret.starts_with("gantry_"), "{secret}");
    let (_, _, again) = env.get("/ui/tokens", &cookie).await;
    assert!(!again.contains(secret), "shown once");
    assert!(again.contains("deploy:shop@stage"));
    // A bad scope is said on the page, nothing created.
    let (status, _, body) = env
        .post(
            "/ui/tokens",
            &cookie,
            Some(ORIGIN),
            &[("_csrf", &csrf), ("name", "x"), ("scopes", "fly")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("fly"), "{body}");
    // Signing the new token in, then ending its sessions from the admin's page.
    let ci = env.sign_in(secret).await;
    assert_eq!(env.get("/ui/changes", &ci).await.0, StatusCode::OK);
    let (status, _, _) = env
        .post(
            "/ui/sessions/end",
            &cookie,
            Some(ORIGIN),
            &[("_csrf", &csrf), ("token", "ci")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(env.get("/ui/changes", &ci).await.0, StatusCode::SEE_OTHER);
    // Revoking from the page.
    let (status, _, _) = env.act("/ui/tokens/ci/revoke", &cookie, &csrf).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(env
        .state
        .store
        .list_tokens()
        .await
        .unwrap()
        .iter()
        .all(|t| t.name != "ci"));
}

/// Signing out in one tab ends another tab's stream (within the 15 s re-check).
#[tokio::test]
async fn signing_out_ends_the_streams() {
    let env = env().await;
    let admin = env.token("admin", "admin").await;
    let cookie = env.sign_in(&admin).await;
    let csrf = env.csrf(&cookie).await;
    let request = Env::stream(&cookie);
    let response = env.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    use futures::StreamExt as _;
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: ready"));
    // A change arrives as a table row.
    env.change("<i>live</i> one", "shop", "prod").await;
    let row = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let row = String::from_utf8_lossy(&row).into_owned();
    assert!(
        row.contains("event: created") && row.contains("&lt;i&gt;live&lt;/i&gt; one"),
        "{row}"
    );
    let (status, _, _) = env.act("/ui/sign-out", &cookie, &csrf).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        let mut rest = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            rest.push_str(&String::from_utf8_lossy(&chunk));
        }
        rest
    })
    .await
    .expect("the stream outlived its session");
    assert!(
        rest.contains("event: signed-out"),
        "the page is told why: {rest}"
    );
    // And a signed-out stream is refused outright.
    let request = Env::stream(&cookie);
    assert_eq!(env.send(request).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn incidents_are_shown_and_acted_on_within_the_scopes() {
    let env = env().await;
    let admin = env.token("admin", "admin").await;
    let reader = env.token("reader", "read").await;
    env.change_of(ChangeKind::Deploy, "Deploy shop 1.4.0", "shop", "prod")
        .await;
    let incident = gantry_server::incidents::open(
        &env.state,
        "admin",
        gantry_core::incident::NewIncident {
            title: "Checkout <errors> up".into(),
            service: "shop".into(),
            environment: "prod".into(),
            severity: None,
            impact_started_at: None,
        },
        gantry_core::incident::Source::Manual,
    )
    .await
    .unwrap();
    let path = format!("/ui/incidents/{}", incident.id);
    // A reader sees it, without buttons, and cannot act by a forged POST.
    let cookie = env.sign_in(&reader).await;
    let (status, _, body) = env.get("/ui/incidents", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Checkout &lt;errors&gt; up"), "{body}");
    assert!(
        body.contains("(1 open) Incidents"),
        "the count is in the tab title"
    );
    let (_, _, body) = env.get(&path, &cookie).await;
    assert!(!body.contains(">Acknowledge</button>"), "{body}");
    assert!(
        body.contains("Deploy shop 1.4.0"),
        "the suspect is listed: {body}"
    );
    assert_html_is_policy_clean(&body);
    let csrf = env.csrf(&cookie).await;
    let (status, _, _) = env.act(&format!("{path}/ack"), &cookie, &csrf).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let stored = gantry_server::incidents::load(env.state.store.as_ref(), incident.id)
        .await
        .unwrap();
    assert!(stored.acknowledged_at.is_none(), "nothing was done");
    // The admin acknowledges and writes a note, shown as text.
    let cookie = env.sign_in(&admin).await;
    let csrf = env.csrf(&cookie).await;
    let (status, _, _) = env.act(&format!("{path}/ack"), &cookie, &csrf).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = env
        .post(
            &format!("{path}/notes"),
            &cookie,
            Some(ORIGIN),
            &[("_csrf", &csrf), ("text", "<img src=x onerror=alert(1)>")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, body) = env.get(&path, &cookie).await;
    assert!(
        body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{body}"
    );
    let stored = gantry_server::incidents::load(env.state.store.as_ref(), incident.id)
        .await
        .unwrap();
    assert!(stored.acknowledged_at.is_some());
    let (status, _, _) = env.act(&format!("{path}/nope"), &cookie, &csrf).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, body) = env.get("/ui/monitors", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("gantry monitor apply"),
        "the empty state says what to do: {body}"
    );
}

#[tokio::test]
async fn the_report_page_shows_the_figures_and_refuses_bad_periods() {
    let env = env().await;
    let admin = env.token("admin", "admin").await;
    let narrow = env.token("narrow", "read:shop@stage").await;
    let cookie = env.sign_in(&admin).await;
    let (status, _, body) = env.get("/ui/report?since=30d&by=day", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("Time to detect (MTTD)") && body.contains("n = 0"),
        "{body}"
    );
    assert_html_is_policy_clean(&body);
    let (status, _, body) = env.get("/ui/report?since=tomorrow-ish", &cookie).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("since"), "{body}");
    let (status, _, _) = env.get("/ui/report?by=year", &cookie).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A token narrowed to stage reads no prod report.
    let cookie = env.sign_in(&narrow).await;
    let (status, _, _) = env.get("/ui/report", &cookie).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = env
        .get("/ui/report?service=shop&environment=stage", &cookie)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_need_read_http2_posts_are_same_origin_and_a_confirmed_plan_is_what_starts() {
    let env = env().await;
    let build = env.shop("stage", 1).await;
    // Metrics data needs read, as the Graphite API does: a write-only token gets none.
    let writer = env.token("writer", "write").await;
    let cookie = env.sign_in(&writer).await;
    let (status, _, _) = env
        .get("/ui/metrics/data?target=*&from=-1h&until=now", &cookie)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = env.get("/ui/metrics", &cookie).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // HTTP/2 sends the host as the URI's authority, without a Host header: a POST from
    // this server's page is still same-origin.
    let admin = env.token("admin", "admin").await;
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", &admin)
        .finish();
    let request = Request::builder()
        .method("POST")
        .uri(format!("http://{HOST}/ui/sign-in"))
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let (status, _, _) = env.send(request).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "sign-in over HTTP/2");

    // A token narrowed to stage sees the service, but not its builds (the whole service's,
    // as the API reads them); a service it may not read looks like one that does not exist.
    let narrow = env.token("narrow", "read:shop@stage").await;
    let cookie = env.sign_in(&narrow).await;
    let (status, _, body) = env.get("/ui/services/shop", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        !body.contains("1.4.0"),
        "no builds for a narrowed token: {body}"
    );
    let billing = env.token("billing", "read:billing").await;
    let cookie = env.sign_in(&billing).await;
    let (forbidden, _, a) = env.get("/ui/services/shop", &cookie).await;
    let (missing, _, b) = env.get("/ui/services/nothing", &cookie).await;
    assert_eq!(
        (forbidden, missing),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    assert_eq!(
        a.replace("shop", "X").len(),
        b.replace("nothing", "X").len(),
        "the two answers differ only in the name"
    );

    // A confirmed plan is what starts: if the build changed since, 409 and nothing starts.
    let cookie = env.sign_in(&admin).await;
    let csrf = env.csrf(&cookie).await;
    let id = build.id.to_string();
    let form = [
        ("_csrf", csrf.as_str()),
        ("expect_build", "01JDQ4Y3V7W2J8X1B2C3D4E5F6"),
        ("action", "deploy"),
        ("environment", "stage"),
        ("build", id.as_str()),
    ];
    let (status, _, body) = env
        .post("/ui/services/shop/rollouts", &cookie, Some(ORIGIN), &form)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("review it again"), "{body}");
    assert!(env.rollouts().await.is_empty());
    let (_, _, page) = env
        .get(
            &format!("/ui/services/shop/confirm?action=deploy&environment=stage&build={id}"),
            &cookie,
        )
        .await;
    assert!(
        page.contains(&format!("name=\"expect_build\" value=\"{id}\"")),
        "{page}"
    );
}

/// A token pasted into the sign-in counts as a credential: past 20 wrong ones a minute from
/// one address, its sign-ins are refused with 429, while a valid token still signs in.
#[tokio::test]
async fn wrong_tokens_pasted_into_the_sign_in_are_counted() {
    let env = env().await;
    let admin = env.token("root", "admin").await;
    let from: std::net::SocketAddr = "192.0.2.9:50000".parse().unwrap();
    let sign_in = |token: &str| {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("token", token), ("next", "/")])
            .finish();
        let mut request = Request::builder()
            .method("POST")
            .uri("/ui/sign-in")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, ORIGIN)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(from));
        request
    };
    for n in 0..20 {
        let (status, _, _) = env.send(sign_in("gantry_wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let (status, headers, body) = env.send(sign_in("gantry_wrong")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(headers.contains_key(header::RETRY_AFTER));
    let (status, _, body) = env.send(sign_in(&admin)).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "a valid token still signs in: {body}"
    );
}
