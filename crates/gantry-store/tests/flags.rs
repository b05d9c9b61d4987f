//! Flags' part of the conformance suite: flags, environments, optimistic concurrency,
//! revisions, segments, schedules, SDK tokens, registrations and usage behave the same on
//! SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use gantry_core::{Change, ChangeKind, ChangeQuery, ChangeStatus, NewService, Scope, TokenInfo};
use gantry_store::testing::each_backend;
use gantry_store::{
    FlagEnvironmentRecord, FlagRecord, FlagSchedule, FlagUsage, FlagWrite, SdkClient,
    SegmentRecord, Store, StoreError,
};
use ulid::Ulid;

fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
}

fn flag_change(service: &str, env: Option<&str>, summary: &str) -> Change {
    Change {
        id: Ulid::new(),
        kind: ChangeKind::Flag,
        service: Some(service.into()),
        environment: env.map(str::to_string),
        actor: "alice".into(),
        summary: summary.into(),
        description: None,
        status: ChangeStatus::Succeeded,
        started_at: at(0),
        finished_at: Some(at(0)),
        size: None,
        commit_range: None,
        links: vec![],
        metadata: serde_json::Map::new(),
        history: None,
    }
}

fn new_flag(service: &str, name: &str) -> FlagRecord {
    FlagRecord {
        service: service.into(),
        name: name.into(),
        flag_type: "release".into(),
        description: Some("new checkout".into()),
        owner: Some("team-shop".into()),
        created_at: at(0),
        created_by: "alice".into(),
        archived_at: None,
        version: 0,
        environments: BTreeMap::new(),
    }
}

async fn service(store: &Arc<dyn Store>, name: &str) {
    store
        .create_service(
            &NewService {
                name: name.into(),
                environments: vec!["stage".into(), "prod".into()],
            },
            at(0),
        )
        .await
        .unwrap();
}

fn env_write(environment: &str, enabled: bool) -> FlagWrite {
    FlagWrite::Environment {
        environment: environment.into(),
        definition: format!(r#"{{"enabled":{enabled},"strategies":[{{"name":"default"}}]}}"#),
    }
}

#[tokio::test]
async fn flags_lifecycle_with_changes_in_the_same_transaction() {
    each_backend("flags_lifecycle", |store| async move {
        // An unknown service is refused, nothing stored.
        let err = store
            .create_flag(
                &new_flag("ghost", "x"),
                &flag_change("ghost", None, "create"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        service(&store, "shop").await;
        let before = store.flag_state().await.unwrap();
        let created = store
            .create_flag(
                &new_flag("shop", "checkout-v2"),
                &flag_change("shop", None, "checkout-v2: created"),
            )
            .await
            .unwrap();
        assert_eq!(created.version, 1);
        let err = store
            .create_flag(
                &new_flag("shop", "checkout-v2"),
                &flag_change("shop", None, "again"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");

        // A write at the version read succeeds; one at an older version is stale and
        // changes nothing (its change is not recorded either).
        let change = flag_change("shop", Some("prod"), "checkout-v2: enabled in prod");
        let written = store
            .write_flag(
                "shop",
                "checkout-v2",
                1,
                &env_write("prod", true),
                "alice",
                at(10),
                Some(&change),
            )
            .await
            .unwrap();
        assert_eq!(written.version, 2);
        assert!(written.environments["prod"].definition.contains("true"));
        let stale = flag_change("shop", Some("prod"), "stale");
        let err = store
            .write_flag(
                "shop",
                "checkout-v2",
                1,
                &env_write("prod", false),
                "bob",
                at(20),
                Some(&stale),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Stale(_)), "{err}");
        assert!(store.get_change(stale.id).await.unwrap().is_none());
        let flag = store
            .get_flag("shop", "checkout-v2")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(flag.version, 2);
        assert_eq!(
            flag.environments["prod"],
            FlagEnvironmentRecord {
                definition: r#"{"enabled":true,"strategies":[{"name":"default"}]}"#.into(),
                updated_at: at(10),
                updated_by: "alice".into(),
            }
        );
        let recorded = store.get_change(change.id).await.unwrap().unwrap();
        assert_eq!(recorded.kind, ChangeKind::Flag);
        assert_eq!(recorded.summary, "checkout-v2: enabled in prod");
        let err = store
            .write_flag("shop", "nope", 1, &FlagWrite::Archive, "a", at(1), None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");

        // Every write bumps the global revision and the service's.
        let after = store.flag_state().await.unwrap();
        assert_eq!(after.database_id, before.database_id);
        assert_eq!(after.revision, before.revision + 2);
        assert_eq!(
            store.flag_revisions().await.unwrap(),
            vec![("shop".to_string(), after.revision)]
        );

        // Metadata, archive and restore.
        let meta = FlagWrite::Meta {
            flag_type: "operational".into(),
            description: None,
            owner: Some("ops".into()),
        };
        let flag = store
            .write_flag("shop", "checkout-v2", 2, &meta, "alice", at(30), None)
            .await
            .unwrap();
        assert_eq!(flag.flag_type, "operational");
        assert_eq!(flag.description, None);
        assert_eq!(flag.environments.len(), 1);
        let flag = store
            .write_flag(
                "shop",
                "checkout-v2",
                3,
                &FlagWrite::Archive,
                "alice",
                at(40),
                None,
            )
            .await
            .unwrap();
        assert_eq!(flag.archived_at, Some(at(40)));
        assert_eq!(
            store.list_flags(Some("shop"), Some(false)).await.unwrap(),
            vec![]
        );
        assert_eq!(
            store.list_flags(None, Some(true)).await.unwrap(),
            vec![flag.clone()]
        );
        let flag = store
            .write_flag(
                "shop",
                "checkout-v2",
                4,
                &FlagWrite::Restore,
                "alice",
                at(50),
                None,
            )
            .await
            .unwrap();
        assert_eq!(flag.archived_at, None);

        // A service with flags cannot be deleted, even with force.
        let err = store.delete_service("shop", true).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");

        // The flag changes are in the log under kind `flag`.
        let mut query = ChangeQuery {
            limit: 10,
            ..ChangeQuery::default()
        };
        query.kind = Some(ChangeKind::Flag);
        let listed = store.list_changes(&query).await.unwrap();
        assert_eq!(listed.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn snapshot_holds_flags_and_segments_of_one_service() {
    each_backend("flags_snapshot", |store| async move {
        service(&store, "shop").await;
        service(&store, "cart").await;
        assert_eq!(store.flag_snapshot("shop").await.unwrap().revision, 0);
        let mut flag = new_flag("shop", "a");
        flag.environments.insert(
            "prod".into(),
            FlagEnvironmentRecord {
                definition:
                    r#"{"enabled":true,"strategies":[{"name":"default","segments":[SEG]}]}"#.into(),
                updated_at: at(1),
                updated_by: "alice".into(),
            },
        );
        let segment = store
            .put_segment(
                &SegmentRecord {
                    id: 0,
                    service: "shop".into(),
                    name: "beta-users".into(),
                    description: None,
                    constraints: r#"[{"contextName":"userId","operator":"IN","values":["1"]}]"#
                        .into(),
                    version: 0,
                    updated_at: at(1),
                    updated_by: "alice".into(),
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(segment.version, 1);
        let definition = flag.environments["prod"]
            .definition
            .replace("SEG", &segment.id.to_string());
        flag.environments.get_mut("prod").unwrap().definition = definition;
        store
            .create_flag(&flag, &flag_change("shop", None, "a created"))
            .await
            .unwrap();
        store
            .create_flag(
                &new_flag("cart", "b"),
                &flag_change("cart", None, "b created"),
            )
            .await
            .unwrap();
        let snapshot = store.flag_snapshot("shop").await.unwrap();
        assert_eq!(snapshot.flags.len(), 1);
        assert_eq!(snapshot.flags[0].environments.len(), 1);
        assert_eq!(snapshot.segments, vec![segment.clone()]);
        let revisions = store.flag_revisions().await.unwrap();
        assert_eq!(revisions.len(), 2);
        assert!(revisions.contains(&("shop".to_string(), snapshot.revision)));

        // A used segment cannot be deleted; replacing it needs its version.
        let err = store
            .delete_segment("shop", "beta-users")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let mut edited = segment.clone();
        edited.constraints = "[]".into();
        let err = store.put_segment(&edited, Some(7)).await.unwrap_err();
        assert!(matches!(err, StoreError::Stale(_)), "{err}");
        let stored = store.put_segment(&edited, Some(1)).await.unwrap();
        assert_eq!((stored.id, stored.version), (segment.id, 2));
        let err = store.put_segment(&segment, None).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert_eq!(store.list_segments("shop").await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn flag_writes_wake_followers() {
    each_backend("flags_wake", |store| async move {
        service(&store, "shop").await;
        let mut wakes = store.subscribe_flags();
        wakes.borrow_and_update();
        store
            .create_flag(&new_flag("shop", "a"), &flag_change("shop", None, "a"))
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), wakes.changed())
            .await
            .expect("a flag write wakes followers")
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn sdk_tokens_are_kept_apart_and_revocation_is_announced() {
    each_backend("flags_tokens", |store| async move {
        let token = |name: &str, scopes: &str| TokenInfo {
            name: name.into(),
            scopes: Scope::parse_list(scopes).unwrap(),
            created_at: at(0),
            expires_at: None,
            created_by: "admin".into(),
        };
        store
            .create_token(&token("ci", "read,write"), "d-ci")
            .await
            .unwrap();
        store
            .create_token(&token("shop-prod", "client:shop@prod"), "d-client")
            .await
            .unwrap();
        // Names are unique across both kinds.
        let err = store
            .create_token(&token("ci", "frontend:shop@prod"), "d-x")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let err = store
            .create_token(&token("shop-prod", "read"), "d-y")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let record = store.token_by_digest("d-client").await.unwrap().unwrap();
        assert_eq!(record.info.scopes[0].to_string(), "client:shop@prod");
        let names: Vec<String> = store
            .list_tokens()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, vec!["ci", "shop-prod"]);
        let before = store.flag_state().await.unwrap().token_revision;
        let mut wakes = store.subscribe_flags();
        wakes.borrow_and_update();
        store.revoke_token("shop-prod", at(5)).await.unwrap();
        assert!(
            store
                .token_by_digest("d-client")
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
        assert_eq!(store.flag_state().await.unwrap().token_revision, before + 1);
        tokio::time::timeout(std::time::Duration::from_secs(5), wakes.changed())
            .await
            .expect("an SDK token revocation wakes followers")
            .unwrap();
        // Revoking an ordinary token does not touch the flag counters.
        store.revoke_token("ci", at(6)).await.unwrap();
        assert_eq!(store.flag_state().await.unwrap().token_revision, before + 1);
    })
    .await;
}

#[tokio::test]
async fn schedules_run_once() {
    each_backend("flags_schedules", |store| async move {
        service(&store, "shop").await;
        store
            .create_flag(&new_flag("shop", "a"), &flag_change("shop", None, "a"))
            .await
            .unwrap();
        let schedule = FlagSchedule {
            id: Ulid::new(),
            service: "shop".into(),
            name: "a".into(),
            environment: "prod".into(),
            action: r#"{"enable":true}"#.into(),
            run_at: at(100),
            created_by: "alice".into(),
            created_at: at(0),
            state: "pending".into(),
            ran_at: None,
            change_id: None,
            error: None,
        };
        store.insert_flag_schedule(&schedule).await.unwrap();
        let mut ghost = schedule.clone();
        ghost.id = Ulid::new();
        ghost.name = "ghost".into();
        let err = store.insert_flag_schedule(&ghost).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        assert!(store
            .due_flag_schedules(at(99), 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store.due_flag_schedules(at(100), 10).await.unwrap(),
            vec![schedule.clone()]
        );
        let change = Ulid::new();
        assert!(store
            .finish_flag_schedule(schedule.id, "done", at(101), Some(change), None)
            .await
            .unwrap());
        // A second server finishing the same schedule finds it no longer pending.
        assert!(!store
            .finish_flag_schedule(schedule.id, "done", at(102), None, None)
            .await
            .unwrap());
        let stored = store.get_flag_schedule(schedule.id).await.unwrap().unwrap();
        assert_eq!(stored.state, "done");
        assert_eq!(stored.change_id, Some(change));
        assert_eq!(stored.ran_at, Some(at(101)));
        assert_eq!(
            store.list_flag_schedules("shop", Some("a")).await.unwrap(),
            vec![stored]
        );
        assert!(store
            .due_flag_schedules(at(200), 10)
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn registrations_and_usage_add_up() {
    each_backend("flags_usage", |store| async move {
        service(&store, "shop").await;
        store
            .create_flag(&new_flag("shop", "a"), &flag_change("shop", None, "a"))
            .await
            .unwrap();
        let client = SdkClient {
            service: "shop".into(),
            environment: "prod".into(),
            app_name: "web".into(),
            instance_id: "web-1".into(),
            sdk_version: Some("unleash-client-python:6.9.1".into()),
            strategies: vec!["default".into(), "flexibleRollout".into()],
            started_at: Some(at(0)),
            interval_ms: Some(15_000),
            first_seen_at: at(1),
            last_seen_at: at(1),
        };
        store.register_sdk_client(&client).await.unwrap();
        let mut again = client.clone();
        again.last_seen_at = at(60);
        again.first_seen_at = at(60);
        store.register_sdk_client(&again).await.unwrap();
        let clients = store.sdk_clients("shop").await.unwrap();
        assert_eq!(clients.len(), 1);
        assert_eq!(clients[0].first_seen_at, at(1));
        assert_eq!(clients[0].last_seen_at, at(60));

        let usage = |name: &str, hour: i64, yes: i64, no: i64| FlagUsage {
            service: "shop".into(),
            environment: "prod".into(),
            name: name.into(),
            hour: at(hour * 3600),
            yes,
            no,
            variants: BTreeMap::from([("blue".to_string(), yes)]),
        };
        let stored = store
            .add_flag_usage(&[usage("a", 0, 3, 1), usage("ghost", 0, 5, 5)])
            .await
            .unwrap();
        assert_eq!(stored, 1, "usage of a flag that does not exist is skipped");
        store
            .add_flag_usage(&[usage("a", 0, 2, 0), usage("a", 2, 1, 1)])
            .await
            .unwrap();
        let summary = store.flag_usage_since("shop", at(0)).await.unwrap();
        assert_eq!(summary.len(), 1);
        assert_eq!(
            (summary[0].yes, summary[0].no, summary[0].hour),
            (6, 2, at(7200))
        );
        assert_eq!(store.prune_flag_usage(at(3600)).await.unwrap(), 1);
        let summary = store.flag_usage_since("shop", at(0)).await.unwrap();
        assert_eq!((summary[0].yes, summary[0].no), (1, 1));
    })
    .await;
}
