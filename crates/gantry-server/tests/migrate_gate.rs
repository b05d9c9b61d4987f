//! `POST /api/v1/migrate/gate` with no services (`"services": []`) still needs `migrate` in
//! the environment asked about: it once answered 200 to any token for any environment.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::json;

async fn gate(env: &common::Env, token: &str, environment: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method("POST")
        .uri("/api/v1/migrate/gate")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"services": [], "environment": environment}).to_string(),
        ))
        .unwrap();
    let (status, _, body) = env.send(request).await;
    (status, body)
}

#[tokio::test]
async fn an_empty_service_list_still_needs_migrate_in_the_environment() {
    let env = common::env().await;
    let read = env.token("reader", "read").await;
    let other_environment = env.token("stage-runner", "migrate:shop@stage").await;
    let held = env.token("prod-runner", "migrate:shop@prod").await;
    let everywhere = env.token("runner", "migrate").await;

    for (who, token) in [("read", &read), ("migrate:shop@stage", &other_environment)] {
        let (status, body) = gate(&env, token, "prod").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {body}");
        assert!(body.contains("migrate@prod"), "{who}: {body}");
    }
    for (who, token) in [("migrate:shop@prod", &held), ("migrate", &everywhere)] {
        let (status, body) = gate(&env, token, "prod").await;
        assert_eq!(status, StatusCode::OK, "{who}: {body}");
    }
}
