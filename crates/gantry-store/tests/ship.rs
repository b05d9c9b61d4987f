//! Shipping's part of the conformance suite: builds, blobs, hosts, rollouts, tasks and
//! deployments behave the same on SQLite and PostgreSQL.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use gantry_core::ship::{
    Build, HostFacts, HostRelease, Rollout, RolloutKind, RolloutSpec, RolloutState, Task,
    TaskPurpose, TaskState,
};
use gantry_store::testing::each_backend;
use gantry_store::{BuildQuery, Deployment, ShipSignal, StoreError};
use ulid::Ulid;

fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
}

fn build(service: &str, version: &str) -> Build {
    Build {
        id: Ulid::new(),
        service: service.into(),
        version: version.into(),
        sha256: "ab".repeat(32),
        size: 10,
        url: None,
        commit: Some("abc123".into()),
        commit_time: Some(at(-100)),
        created_by: "ci".into(),
        created_at: at(0),
    }
}

fn rollout(service: &str, env: &str, b: &Build) -> Rollout {
    Rollout {
        id: Ulid::new(),
        kind: RolloutKind::Deploy,
        service: service.into(),
        environment: env.into(),
        build_id: b.id,
        version: b.version.clone(),
        change_id: Ulid::new(),
        state: RolloutState::Running,
        wave: 0,
        bake_until: None,
        reason: None,
        spec: RolloutSpec {
            waves: vec![1, 2],
            wave_sizes: "1,100%".into(),
            bake_secs: 0,
            parallel: 0,
            max_failed: 0,
            roles: None,
            auto_rollback: true,
            max_analysis_secs: 600,
        },
        skipped: vec![],
        aborted_by: None,
        control: None,
        reverts: None,
        created_by: "alice".into(),
        created_at: at(0),
        updated_at: at(0),
        finished_at: None,
    }
}

fn task(r: &Rollout, host: &str, state: TaskState) -> Task {
    Task {
        id: Ulid::new(),
        rollout_id: Some(r.id),
        host: host.into(),
        service: r.service.clone(),
        environment: r.environment.clone(),
        purpose: TaskPurpose::Deploy,
        wave: 0,
        build_id: r.build_id,
        version: r.version.clone(),
        from_build: None,
        from_version: None,
        state,
        step: None,
        output: String::new(),
        error: None,
        created_at: at(0),
        updated_at: at(0),
        switched_at: None,
        undrained_at: None,
    }
}

#[tokio::test]
async fn builds_are_unique_per_version_and_found_by_prefix() {
    each_backend("ship_builds", |store| async move {
        let b = build("shop", "1.0");
        store.insert_build(&b).await.unwrap();
        let err = store.insert_build(&build("shop", "1.0")).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert!(err.to_string().contains("version '1.0'"), "{err}");
        store.insert_build(&build("cart", "1.0")).await.unwrap();
        assert_eq!(store.get_build(b.id).await.unwrap(), Some(b.clone()));
        let by_prefix = store
            .find_builds(&BuildQuery {
                id_prefix: Some(b.id.to_string()[..20].to_lowercase()),
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_prefix, vec![b.clone()]);
        let shop = store
            .find_builds(&BuildQuery {
                service: Some("shop".into()),
                version: Some("1.0".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(shop.len(), 1);
        store.delete_build(b.id).await.unwrap();
        assert_eq!(store.get_build(b.id).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn blobs_are_invisible_until_committed() {
    each_backend("ship_blobs", |store| async move {
        let sha = "cd".repeat(32);
        store.put_blob_chunk("up1", 0, b"hello ").await.unwrap();
        store.put_blob_chunk("up1", 1, b"world").await.unwrap();
        assert_eq!(store.blob_size(&sha).await.unwrap(), None);
        assert_eq!(store.blob_chunk(&sha, 0).await.unwrap(), None);
        store.commit_blob("up1", &sha, 11, 2, at(0)).await.unwrap();
        assert_eq!(store.blob_size(&sha).await.unwrap(), Some((11, 2)));
        assert_eq!(
            store.blob_chunk(&sha, 1).await.unwrap().as_deref(),
            Some(&b"world"[..])
        );
        // The same bytes uploaded again: the second copy is dropped.
        store
            .put_blob_chunk("up2", 0, b"hello world")
            .await
            .unwrap();
        store.commit_blob("up2", &sha, 11, 1, at(1)).await.unwrap();
        assert_eq!(store.blob_size(&sha).await.unwrap(), Some((11, 2)));
        assert_eq!(store.blob_chunk("up2", 0).await.unwrap(), None);
        store.put_blob_chunk("up3", 0, b"partial").await.unwrap();
        store.drop_blob_chunks("up3").await.unwrap();
        assert_eq!(store.blob_chunk("up3", 0).await.unwrap(), None);
        store.delete_blob(&sha).await.unwrap();
        assert_eq!(store.blob_size(&sha).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn hosts_enroll_report_and_go_into_maintenance() {
    each_backend("ship_hosts", |store| async move {
        store
            .enroll_host("web-1", "prod", &["web".into()], at(0))
            .await
            .unwrap();
        let h = store.get_host("web-1").await.unwrap().unwrap();
        assert_eq!(h.roles, vec!["web".to_string()]);
        assert_eq!(h.last_seen_at, None);
        let facts = HostFacts {
            os: "linux".into(),
            arch: "x86_64".into(),
            agent_version: "0.1.0".into(),
            roles: vec!["web".into()],
        };
        let releases: BTreeMap<String, HostRelease> = [(
            "shop".to_string(),
            HostRelease {
                build_id: Some(Ulid::new()),
                release: "x-1".into(),
            },
        )]
        .into();
        store
            .host_seen("web-1", &facts, &releases, at(5))
            .await
            .unwrap();
        let h = store.get_host("web-1").await.unwrap().unwrap();
        assert_eq!(h.facts, facts);
        assert_eq!(h.releases, releases);
        assert_eq!(h.last_seen_at, Some(at(5)));
        store.set_host_maintenance("web-1", true).await.unwrap();
        assert!(store.get_host("web-1").await.unwrap().unwrap().maintenance);
        assert!(matches!(
            store.host_seen("nope", &facts, &releases, at(5)).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.list_hosts(Some("prod")).await.unwrap().len(), 1);
        assert_eq!(store.list_hosts(Some("stage")).await.unwrap().len(), 0);
        store.delete_host("web-1").await.unwrap();
        assert!(store.get_host("web-1").await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn one_active_rollout_per_service_and_environment() {
    each_backend("ship_rollout_lock", |store| async move {
        let b = build("shop", "2");
        store.insert_build(&b).await.unwrap();
        let mut signals = store.subscribe_ship();
        let r = rollout("shop", "prod", &b);
        let hosts = store
            .insert_rollout(
                &r,
                &[
                    task(&r, "web-1", TaskState::Pending),
                    task(&r, "web-2", TaskState::Planned),
                ],
            )
            .await
            .unwrap();
        assert_eq!(hosts, vec!["web-1".to_string()]);
        let signal = tokio::time::timeout(std::time::Duration::from_secs(5), signals.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(signal, ShipSignal::Dispatched(vec!["web-1".into()]));

        let err = store
            .insert_rollout(&rollout("shop", "prod", &b), &[])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&r.id.to_string()) && msg.contains("alice"),
            "{msg}"
        );
        // Another environment is free.
        store
            .insert_rollout(&rollout("shop", "stage", &b), &[])
            .await
            .unwrap();

        // Finishing releases the lock and records the deployment.
        let mut done = r.clone();
        done.state = RolloutState::Succeeded;
        done.finished_at = Some(at(10));
        let d = Deployment {
            service: "shop".into(),
            environment: "prod".into(),
            at: at(10),
            rollout_id: r.id,
            build_id: b.id,
        };
        store.save_rollout(&done, &[], &[], Some(&d)).await.unwrap();
        assert!(store
            .active_rollout("shop", "prod")
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            store.deployments("shop", "prod", 5).await.unwrap(),
            vec![d.clone()]
        );
        assert_eq!(store.build_deployments(b.id).await.unwrap(), vec![d]);
        assert_eq!(
            store.get_rollout(r.id).await.unwrap().unwrap().state,
            RolloutState::Succeeded
        );
        store
            .insert_rollout(&rollout("shop", "prod", &b), &[])
            .await
            .unwrap();
        assert_eq!(
            store
                .list_rollouts(Some("shop"), None, true, 10)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            store
                .list_rollouts(None, None, false, 10)
                .await
                .unwrap()
                .len(),
            3
        );
    })
    .await;
}

#[tokio::test]
async fn only_open_tasks_take_reports() {
    each_backend("ship_tasks", |store| async move {
        let b = build("shop", "3");
        let r = rollout("shop", "prod", &b);
        let t = task(&r, "web-1", TaskState::Pending);
        store
            .insert_rollout(&r, std::slice::from_ref(&t))
            .await
            .unwrap();
        assert_eq!(
            store.host_tasks("web-1", true, 10).await.unwrap(),
            vec![t.clone()]
        );
        let mut signals = store.subscribe_ship();
        let mut running = t.clone();
        running.state = TaskState::Running;
        running.step = Some("fetch".into());
        assert!(store.report_task(&running).await.unwrap());
        // PostgreSQL delivers notifications asynchronously: the insert's own (its task is
        // dispatched to web-1) may arrive after `subscribe_ship`. The report's must follow.
        let reported = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                match signals.recv().await.unwrap() {
                    ShipSignal::Dispatched(hosts) => assert_eq!(hosts, vec!["web-1".to_string()]),
                    other => break other,
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(reported, ShipSignal::Reported(r.id));
        // Another host cannot report on this task.
        let mut forged = running.clone();
        forged.host = "web-2".into();
        forged.state = TaskState::Succeeded;
        assert!(!store.report_task(&forged).await.unwrap());
        let mut done = running.clone();
        done.state = TaskState::Succeeded;
        assert!(store.report_task(&done).await.unwrap());
        // A late report on a finished task changes nothing.
        assert!(!store.report_task(&running).await.unwrap());
        assert_eq!(
            store.get_task(t.id).await.unwrap().unwrap().state,
            TaskState::Succeeded
        );
        assert!(store
            .host_tasks("web-1", true, 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.rollout_tasks(r.id).await.unwrap().len(), 1);
        // In use: builds that open tasks install.
        let r2 = rollout("shop", "stage", &b);
        store
            .insert_rollout(&r2, &[task(&r2, "web-9", TaskState::Planned)])
            .await
            .unwrap();
        assert!(store.builds_in_use("shop").await.unwrap().contains(&b.id));
    })
    .await;
}

#[test]
fn ship_signal_payloads_round_trip_and_stay_small() {
    let hosts: Vec<String> = (0..2000).map(|i| format!("host-{i:05}")).collect();
    let payloads = ShipSignal::Dispatched(hosts.clone()).payloads();
    assert!(payloads.len() > 1);
    let mut back = Vec::new();
    for p in &payloads {
        assert!(p.len() < 8000);
        match ShipSignal::parse(p) {
            Some(ShipSignal::Dispatched(h)) => back.extend(h),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(back, hosts);
    let id = Ulid::new();
    assert_eq!(
        ShipSignal::parse(&ShipSignal::Reported(id).payloads()[0]),
        Some(ShipSignal::Reported(id))
    );
}
