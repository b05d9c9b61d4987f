//! Fetch against a real local HTTP server: resume, a server that ignores ranges, corruption,
//! size caps, retries.

use gantry_release::{fetch, sha256_file, Error};
use sha2::{Digest, Sha256};

use crate::server::{serve, Behaviour};

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn digest(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn downloads_verifies_and_sends_the_token() {
    let data = body(300_000);
    let server = serve(data.clone(), Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.tar.gz");
    let client = reqwest::Client::new();
    fetch(
        &client,
        &server.url,
        Some("tok3n"),
        &dest,
        &digest(&data),
        1 << 20,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(!dir.path().join("a.tar.gz.part").exists());
    assert_eq!(sha256_file(&dest).await.unwrap(), digest(&data));
    let head = server.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.contains("authorization: bearer tok3n"), "{head}");
}

#[tokio::test]
async fn resumes_a_cut_download_with_range() {
    let data = body(500_000);
    let behaviour = Behaviour {
        cut_first_after: Some(123_456),
        ..Behaviour::default()
    };
    let server = serve(data.clone(), behaviour).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.tar.gz");
    fetch(
        &reqwest::Client::new(),
        &server.url,
        None,
        &dest,
        &digest(&data),
        1 << 20,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let second = requests[1].to_ascii_lowercase();
    assert!(second.contains("range: bytes=123456-"), "{second}");
}

#[tokio::test]
async fn starts_over_when_the_server_ignores_range() {
    let data = body(200_000);
    let behaviour = Behaviour {
        cut_first_after: Some(50_000),
        ignore_range: true,
        ..Behaviour::default()
    };
    let server = serve(data.clone(), behaviour).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.tar.gz");
    fetch(
        &reqwest::Client::new(),
        &server.url,
        None,
        &dest,
        &digest(&data),
        1 << 20,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn resumes_a_partial_file_left_by_an_earlier_run() {
    let data = body(100_000);
    let server = serve(data.clone(), Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.tar.gz");
    std::fs::write(dir.path().join("a.tar.gz.part"), &data[..40_000]).unwrap();
    fetch(
        &reqwest::Client::new(),
        &server.url,
        None,
        &dest,
        &digest(&data),
        1 << 20,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let head = server.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.contains("range: bytes=40000-"), "{head}");
}

#[tokio::test]
async fn a_corrupted_body_is_deleted_and_names_both_digests() {
    let data = body(100_000);
    let behaviour = Behaviour {
        corrupt: true,
        ..Behaviour::default()
    };
    let server = serve(data.clone(), behaviour).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.tar.gz");
    let expected = digest(&data);
    let err = fetch(
        &reqwest::Client::new(),
        &server.url,
        None,
        &dest,
        &expected,
        1 << 20,
    )
    .await
    .unwrap_err();
    let mut corrupted = data.clone();
    corrupted[50_000] ^= 0xff;
    match &err {
        Error::ChecksumMismatch {
            expected: e,
            actual,
            ..
        } => {
            assert_eq!(e, &expected);
            assert_eq!(actual, &digest(&corrupted));
        }
        other => panic!("{other}"),
    }
    let message = err.to_string();
    assert!(message.contains(&expected) && message.contains(&digest(&corrupted)));
    assert!(!dest.exists());
    assert!(!dir.path().join("a.tar.gz.part").exists());
}

#[tokio::test]
async fn refuses_more_than_max_bytes() {
    let data = body(10_000);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.tar.gz");
    for no_length in [false, true] {
        let behaviour = Behaviour {
            no_length,
            ..Behaviour::default()
        };
        let server = serve(data.clone(), behaviour).await;
        let err = fetch(
            &reqwest::Client::new(),
            &server.url,
            None,
            &dest,
            &digest(&data),
            5_000,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("limit of 5000 bytes"), "{no_length}: {err}");
        assert!(!dest.exists());
        assert!(!dir.path().join("a.tar.gz.part").exists());
    }
}

#[tokio::test]
async fn client_errors_are_not_retried_and_server_errors_are() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.tar.gz");
    let sha = "0".repeat(64);

    let server = serve(
        b"nope".to_vec(),
        Behaviour {
            status: Some(404),
            ..Behaviour::default()
        },
    )
    .await;
    let err = fetch(
        &reqwest::Client::new(),
        &server.url,
        None,
        &dest,
        &sha,
        1000,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("404"), "{err}");
    assert_eq!(server.request_count(), 1);

    let server = serve(
        b"busy".to_vec(),
        Behaviour {
            status: Some(503),
            ..Behaviour::default()
        },
    )
    .await;
    let err = fetch(
        &reqwest::Client::new(),
        &server.url,
        None,
        &dest,
        &sha,
        1000,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("503") && err.contains("attempts"), "{err}");
    assert_eq!(
        server.request_count(),
        gantry_release::FETCH_ATTEMPTS as usize
    );

    let err = fetch(
        &reqwest::Client::new(),
        "http://127.0.0.1:1/x",
        None,
        &dest,
        "xyz",
        1000,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("not 64 hex digits"), "{err}");
}
