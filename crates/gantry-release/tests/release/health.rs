//! Health checks by URL and by command.

use gantry_core::{HealthCheck, Hook};
use gantry_release::health_check;

use crate::server::{serve, Behaviour};

fn quick(mut check: HealthCheck, retries: u32) -> HealthCheck {
    check.retries = retries;
    check.interval_secs = 0;
    check.timeout_secs = 5;
    check
}

#[tokio::test]
async fn url_checks() {
    let dir = tempfile::tempdir().unwrap();
    let ok = serve(b"status: ok".to_vec(), Behaviour::default()).await;
    health_check(&quick(HealthCheck::url(&ok.url), 0), dir.path(), &[])
        .await
        .unwrap();
    let mut check = quick(HealthCheck::url(&ok.url), 0);
    check.expect_body = Some("ok".into());
    health_check(&check, dir.path(), &[]).await.unwrap();

    check.expect_body = Some("healthy".into());
    check.retries = 2;
    let before = ok.request_count();
    let err = health_check(&check, dir.path(), &[]).await.unwrap_err();
    assert!(
        err.contains("expected status 200 and a body containing \"healthy\"")
            && err.contains("got status 200 and body \"status: ok\"")
            && err.contains("after 3 attempts"),
        "{err}"
    );
    assert_eq!(ok.request_count() - before, 3);

    let down = serve(
        b"down".to_vec(),
        Behaviour {
            status: Some(503),
            ..Behaviour::default()
        },
    )
    .await;
    let err = health_check(&quick(HealthCheck::url(&down.url), 1), dir.path(), &[])
        .await
        .unwrap_err();
    assert!(err.contains("expected status 200, got status 503"), "{err}");
    let mut check = quick(HealthCheck::url(&down.url), 0);
    check.expect_status = 503;
    health_check(&check, dir.path(), &[]).await.unwrap();

    // Nobody listening.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/health");
    let err = health_check(&quick(HealthCheck::url(&url), 0), dir.path(), &[])
        .await
        .unwrap_err();
    assert!(err.contains("got no answer"), "{err}");
}

#[tokio::test]
async fn command_checks_retry_until_healthy() {
    let dir = tempfile::tempdir().unwrap();
    // Healthy on the third attempt.
    let hook = Hook::Argv(
        ["sh", "-c", "n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; echo attempt $n; [ $n -ge 3 ]"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    health_check(
        &quick(HealthCheck::command(hook.clone()), 3),
        dir.path(),
        &[],
    )
    .await
    .unwrap();
    std::fs::remove_file(dir.path().join("n")).unwrap();
    let err = health_check(&quick(HealthCheck::command(hook), 1), dir.path(), &[])
        .await
        .unwrap_err();
    assert!(
        err.contains("to exit 0; it exited with 1")
            && err.contains("attempt 2")
            && err.contains("after 2 attempts"),
        "{err}"
    );

    let env = vec![("GANTRY_VERSION".to_string(), "2.0".to_string())];
    let hook = Hook::Argv(
        ["sh", "-c", "test \"$GANTRY_VERSION\" = 2.0"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    health_check(&quick(HealthCheck::command(hook), 0), dir.path(), &env)
        .await
        .unwrap();

    let mut slow = quick(
        HealthCheck::command(Hook::Argv(vec!["sleep".into(), "10".into()])),
        0,
    );
    slow.timeout_secs = 1;
    let err = health_check(&slow, dir.path(), &[]).await.unwrap_err();
    assert!(err.contains("did not finish within 1s"), "{err}");
}
