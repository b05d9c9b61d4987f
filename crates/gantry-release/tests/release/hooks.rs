//! Hooks as real processes: timeouts, huge output, environment, relative paths.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use gantry_core::Hook;
use gantry_release::run_hook;

fn argv(args: &[&str]) -> Hook {
    Hook::Argv(args.iter().map(|s| s.to_string()).collect())
}

fn env() -> Vec<(String, String)> {
    [
        ("GANTRY_BUILD_ID", "b-7"),
        ("GANTRY_VERSION", "1.2.3"),
        ("GANTRY_PREVIOUS_VERSION", "1.2.2"),
        ("GANTRY_SERVICE", "shop"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A process is gone when /proc has no entry for it, or only a zombie's.
fn gone(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn script(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn relative_program_env_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "bin/hook",
        "#!/bin/sh\necho \"build=$GANTRY_BUILD_ID version=$GANTRY_VERSION prev=$GANTRY_PREVIOUS_VERSION\"\necho \"cwd=$(pwd)\"\necho oops >&2\nexit 3\n",
    );
    let outcome = run_hook(
        &argv(&["bin/hook"]),
        dir.path(),
        &env(),
        Duration::from_secs(10),
        10,
    )
    .await;
    assert!(!outcome.success);
    assert_eq!(outcome.exit_code, Some(3));
    assert!(!outcome.timed_out);
    assert!(
        outcome.tail.contains("build=b-7 version=1.2.3 prev=1.2.2"),
        "{}",
        outcome.tail
    );
    let cwd = fs::canonicalize(dir.path()).unwrap();
    assert!(
        outcome.tail.contains(&format!("cwd={}", cwd.display())),
        "{}",
        outcome.tail
    );
    assert!(outcome.tail.contains("oops"), "{}", outcome.tail);

    // No shell: metacharacters reach the program as they are.
    let outcome = run_hook(
        &argv(&["echo", "$HOME", "a;b", "|"]),
        dir.path(),
        &[],
        Duration::from_secs(10),
        10,
    )
    .await;
    assert!(outcome.success);
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(outcome.tail, "$HOME a;b |");
}

#[tokio::test]
async fn shell_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Hook::Shell {
        shell: "echo abc | tr b x".into(),
        timeout_secs: None,
    };
    let outcome = run_hook(&hook, dir.path(), &[], Duration::from_secs(10), 10).await;
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.tail, "axc");
}

#[tokio::test]
async fn a_program_that_cannot_start_is_an_outcome() {
    let dir = tempfile::tempdir().unwrap();
    for program in [
        "bin/missing",
        "/nonexistent/prog",
        "no-such-program-anywhere",
    ] {
        let outcome = run_hook(
            &argv(&[program]),
            dir.path(),
            &[],
            Duration::from_secs(5),
            10,
        )
        .await;
        assert!(!outcome.success);
        assert_eq!(outcome.exit_code, None);
        assert!(outcome.tail.contains(program), "{}", outcome.tail);
    }
    // Not executable.
    fs::write(dir.path().join("plain"), "echo hi").unwrap();
    let outcome = run_hook(
        &argv(&["./plain"]),
        dir.path(),
        &[],
        Duration::from_secs(5),
        10,
    )
    .await;
    assert!(!outcome.success);
    assert!(outcome.tail.contains("cannot start"), "{}", outcome.tail);
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let hook = argv(&[
        "sh",
        "-c",
        "sleep 30 & echo $! > bg.pid; echo started; sleep 30",
    ]);
    let started = Instant::now();
    let outcome = run_hook(&hook, dir.path(), &[], Duration::from_secs(1), 10).await;
    let took = started.elapsed();
    assert!(outcome.timed_out, "{outcome:?}");
    assert!(!outcome.success);
    assert_eq!(outcome.exit_code, None);
    assert!(outcome.tail.contains("started"));
    assert!(took < Duration::from_secs(4), "{took:?}");
    let pid = fs::read_to_string(dir.path().join("bg.pid")).unwrap();
    let pid = pid.trim();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !gone(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone(pid), "the background sleep {pid} outlived the timeout");
}

#[tokio::test]
async fn a_hook_timeout_overrides_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Hook::Exec {
        argv: vec!["sleep".into(), "20".into()],
        timeout_secs: Some(1),
    };
    let started = Instant::now();
    let outcome = run_hook(&hook, dir.path(), &[], Duration::from_secs(60), 10).await;
    assert!(outcome.timed_out);
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn a_hundred_megabytes_of_output_keeps_a_small_tail() {
    let dir = tempfile::tempdir().unwrap();
    let hook = argv(&["sh", "-c", "yes | head -c 100000000; echo last >&2"]);
    let outcome = run_hook(&hook, dir.path(), &[], Duration::from_secs(120), 5).await;
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.tail.lines().count(), 5, "{:?}", outcome.tail);
    assert!(outcome.tail.ends_with("last"), "{:?}", outcome.tail);
}

#[tokio::test]
async fn a_daemon_holding_the_pipes_does_not_hang_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let hook = argv(&[
        "sh",
        "-c",
        "sleep 30 & echo $! > daemon.pid; echo restarted",
    ]);
    let started = Instant::now();
    let outcome = run_hook(&hook, dir.path(), &[], Duration::from_secs(20), 10).await;
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.tail, "restarted");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The daemon is left running (it is the hook's business); stop it here.
    let pid = fs::read_to_string(dir.path().join("daemon.pid")).unwrap();
    assert!(!gone(pid.trim()));
    let _ = std::process::Command::new("kill").arg(pid.trim()).status();
}
