//! What the dashboard's handler tests share: an application on a fresh SQLite store, tokens,
//! signing in, and requests as a browser sends them (Host, cookie, Origin, forms).
#![allow(dead_code)] // each test file uses its own share of these

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrono::Utc;
use gantry_core::{Change, ChangeKind, ChangeStatus, Scope, TokenInfo};
use gantry_server::{app, AppState, ServerConfig};
use tower::ServiceExt;

pub const ORIGIN: &str = "http://127.0.0.1:7070";
pub const HOST: &str = "127.0.0.1:7070";

/// A page holds no inline script, no `style` attribute and no `hx-on`: what the
/// Content-Security-Policy and htmx's configuration forbid.
pub fn assert_html_is_policy_clean(body: &str) {
    assert!(!body.contains("style="), "a style attribute: {body}");
    for (i, _) in body.match_indices("<script") {
        let tag: String = body[i..].chars().take_while(|c| *c != '>').collect();
        assert!(tag.contains(" src=\"/assets/"), "an inline script: {tag}");
    }
    assert!(!body.contains("hx-on"), "hx-on is not allowed");
}

pub struct Env {
    pub state: AppState,
    pub router: Router,
    pub _dir: tempfile::TempDir,
}

pub async fn env_with(mut config: ServerConfig) -> Env {
    let dir = tempfile::tempdir().unwrap();
    // Artifacts and the rest of the data directory in the temp dir, never in the crate's.
    if config.data_dir == ServerConfig::default().data_dir {
        config.data_dir = dir.path().to_path_buf();
    }
    let store = gantry_store::SqliteStore::open(&dir.path().join("gantry.db"), Default::default())
        .await
        .unwrap();
    let tsdb = gantry_tsdb::Tsdb::open(&dir.path().join("metrics"), Default::default()).unwrap();
    let state = AppState::new(Arc::new(store), tsdb, config);
    let router = app(state.clone());
    Env {
        state,
        router,
        _dir: dir,
    }
}

pub async fn env() -> Env {
    env_with(ServerConfig::default()).await
}

impl Env {
    /// Creates a token with these scopes; returns its secret.
    pub async fn token(&self, name: &str, scopes: &str) -> String {
        let secret = gantry_core::token::generate_secret();
        let info = TokenInfo {
            name: name.into(),
            scopes: Scope::parse_list(scopes).unwrap(),
            created_at: Utc::now(),
            expires_at: None,
            created_by: "test".into(),
        };
        self.state
            .store
            .create_token(&info, &gantry_core::token::digest(&secret))
            .await
            .unwrap();
        secret
    }

    pub async fn send(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    pub async fn get(
        &self,
        path: &str,
        cookie: &str,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let request = Request::builder()
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap();
        self.send(request).await
    }

    pub async fn post(
        &self,
        path: &str,
        cookie: &str,
        origin: Option<&str>,
        form: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = Request::builder()
            .method("POST")
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            request = request.header(header::ORIGIN, o);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    /// A POST from this server's page whose form holds only the CSRF value (the action is in
    /// the path).
    pub async fn act(
        &self,
        path: &str,
        cookie: &str,
        csrf: &str,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        self.post(path, cookie, Some(ORIGIN), &[("_csrf", csrf)])
            .await
    }

    /// Signs in with `secret`; returns the cookie pair to send back.
    pub async fn sign_in(&self, secret: &str) -> String {
        let (status, headers, body) = self
            .post(
                "/ui/sign-in",
                "",
                Some(ORIGIN),
                &[("token", secret), ("next", "/")],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_string();
        cookie.split(';').next().unwrap().to_string()
    }

    /// The CSRF value a signed-in page carries.
    pub async fn csrf(&self, cookie: &str) -> String {
        let (_, _, body) = self.get("/ui/changes", cookie).await;
        let at = body
            .find("name=\"csrf-token\" content=\"")
            .expect("csrf meta")
            + 27;
        body[at..].split('"').next().unwrap().to_string()
    }

    pub async fn change(&self, summary: &str, service: &str, env: &str) -> Change {
        self.change_of(ChangeKind::Note, summary, service, env)
            .await
    }

    pub async fn change_of(
        &self,
        kind: ChangeKind,
        summary: &str,
        service: &str,
        env: &str,
    ) -> Change {
        let now = Utc::now();
        let change = Change {
            id: ulid::Ulid::new(),
            kind,
            service: Some(service.into()),
            environment: Some(env.into()),
            actor: "ann".into(),
            summary: summary.into(),
            description: Some(format!("details: {summary}")),
            status: ChangeStatus::Succeeded,
            started_at: now,
            finished_at: Some(now),
            size: None,
            commit_range: None,
            links: Vec::new(),
            metadata: serde_json::Map::new(),
            history: None,
        };
        self.state.store.insert_change(&change).await.unwrap();
        change
    }

    /// A JSON request to the API with a bearer token; the status and the body.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        secret: &str,
        body: serde_json::Value,
    ) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {secret}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }
}
