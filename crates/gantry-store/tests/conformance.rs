//! The store conformance suite: every case runs on SQLite (a temp file) and on the
//! machine's PostgreSQL (a fresh schema), and both must give the same answers.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use gantry_core::incident::{
    Cause, Incident, IncidentState, Severity, Source, Suspect, TimelineEntry,
};
use gantry_core::migrate_job::{Job, JobFile, JobKind, JobSpec, JobState};
use gantry_core::{
    Change, ChangeEventKind, ChangeKind, ChangePatch, ChangeQuery, ChangeStatus, Cursor,
    NewService, Scope, TokenInfo,
};
use gantry_store::{
    DeliveryOutcome, DetectConfigRecord, MonitorFileRecord, MonitorStateRecord, NewDelivery,
    NewPing, NewTimelineEntry, NewTransition, PingRecord, SessionRecord, SilenceRecord, Store,
    StoreError, StoreOptions, TagMatch, TransitionRecord, VerdictRecord,
};
use ulid::Ulid;

struct Harness {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite(options: StoreOptions) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = gantry_store::SqliteStore::open(&dir.path().join("gantry.db"), options)
        .await
        .unwrap();
    Harness {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

async fn postgres(label: &str, options: StoreOptions) -> Harness {
    let url = gantry_store::testing::fresh_postgres_url(label).await;
    let store = gantry_store::PostgresStore::open(&url, options)
        .await
        .unwrap();
    Harness {
        store: Arc::new(store),
        _dir: None,
    }
}

/// Declares one conformance case, run once per backend.
macro_rules! conformance {
    ($name:ident, $options:expr, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                let h = super::sqlite($options).await;
                ($body)(h.store.clone()).await;
                h.store.close().await;
            }
            #[tokio::test]
            async fn postgres() {
                let h = super::postgres(stringify!($name), $options).await;
                ($body)(h.store.clone()).await;
                h.store.close().await;
            }
        }
    };
    ($name:ident, $body:expr) => {
        conformance!($name, StoreOptions::default(), $body);
    };
}

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
}

fn change(service: &str, env: &str, kind: ChangeKind, started: DateTime<Utc>) -> Change {
    Change {
        id: Ulid::new(),
        kind,
        service: Some(service.into()),
        environment: Some(env.into()),
        actor: "ci".into(),
        summary: format!("{kind} {service} to {env}"),
        description: None,
        status: ChangeStatus::Succeeded,
        started_at: started,
        finished_at: Some(started),
        size: Some(gantry_core::Size {
            value: 3.0,
            unit: "commits".into(),
        }),
        commit_range: Some(gantry_core::CommitRange {
            from: "abc".into(),
            to: "def".into(),
        }),
        links: vec![gantry_core::Link {
            title: "PR".into(),
            url: "https://example.com/pr/1".into(),
        }],
        metadata: serde_json::json!({"build": 42, "labels": ["hotfix"]})
            .as_object()
            .cloned()
            .unwrap(),
        history: None,
    }
}

fn query() -> ChangeQuery {
    ChangeQuery {
        limit: 100,
        ..ChangeQuery::default()
    }
}

conformance!(insert_get_round_trip, |store: Arc<dyn Store>| async move {
    let c = change("shop", "prod", ChangeKind::Deploy, at(0));
    store.insert_change(&c).await.unwrap();
    let got = store.get_change(c.id).await.unwrap().unwrap();
    assert_eq!(got.history, Some(vec![]));
    assert_eq!(
        Change {
            history: None,
            ..got
        },
        c
    );
    assert!(store.get_change(Ulid::new()).await.unwrap().is_none());
    // Service and environment were registered on first use.
    assert!(store.get_service("shop").await.unwrap().is_some());
    assert_eq!(store.list_environments().await.unwrap(), vec!["prod"]);
});

conformance!(import_is_listed_but_not_streamed, |store: Arc<
    dyn Store,
>| async move {
    let start = store.last_event_seq().await.unwrap();
    let changes: Vec<Change> = (0..1200)
        .map(|i| {
            change(
                &format!("svc{}", i % 7),
                if i % 2 == 0 { "prod" } else { "stage" },
                ChangeKind::Deploy,
                at(i),
            )
        })
        .collect();
    assert_eq!(store.import_changes(&changes).await.unwrap(), 1200);
    let q = ChangeQuery {
        service: Some("svc3".into()),
        limit: 1000,
        ..query()
    };
    let listed = store.list_changes(&q).await.unwrap();
    assert_eq!(
        listed.len(),
        changes
            .iter()
            .filter(|c| c.service.as_deref() == Some("svc3"))
            .count()
    );
    assert_eq!(
        listed[0],
        changes
            .iter()
            .rev()
            .find(|c| c.service.as_deref() == Some("svc3"))
            .unwrap()
            .clone()
    );
    let tagged = store
        .changes_by_tags(
            &["svc3".to_string(), "hotfix".to_string()],
            TagMatch::All,
            at(0),
            at(2000),
            5000,
        )
        .await
        .unwrap();
    assert_eq!(tagged.len(), listed.len());
    assert_eq!(store.list_services().await.unwrap().len(), 7);
    assert_eq!(
        store.last_event_seq().await.unwrap(),
        start,
        "an import is not streamed"
    );
});

conformance!(
    duplicate_id_is_a_conflict,
    |store: Arc<dyn Store>| async move {
        let c = change("shop", "prod", ChangeKind::Deploy, at(0));
        store.insert_change(&c).await.unwrap();
        let err = store.insert_change(&c).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    }
);

conformance!(
    unknown_service_refused_without_auto_create,
    StoreOptions {
        auto_create_services: false,
        ..StoreOptions::default()
    },
    |store: Arc<dyn Store>| async move {
        let c = change("shop", "prod", ChangeKind::Deploy, at(0));
        let err = store.insert_change(&c).await.unwrap_err();
        assert!(err.to_string().contains("not registered"), "{err}");
        assert!(
            store.get_change(c.id).await.unwrap().is_none(),
            "nothing stored"
        );
        store
            .create_service(
                &NewService {
                    name: "shop".into(),
                    environments: vec![],
                },
                at(0),
            )
            .await
            .unwrap();
        store.insert_change(&c).await.unwrap();
    }
);

conformance!(
    a_bad_change_in_a_group_fails_alone,
    StoreOptions {
        auto_create_services: false,
        ..StoreOptions::default()
    },
    |store: Arc<dyn Store>| async move {
        store
            .create_service(
                &NewService {
                    name: "shop".into(),
                    environments: vec![],
                },
                at(0),
            )
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = store.clone();
            let service = if i % 5 == 0 { "nope" } else { "shop" };
            let c = change(service, "prod", ChangeKind::Deploy, at(i));
            tasks.push(tokio::spawn(async move { store.insert_change(&c).await }));
        }
        let (mut ok, mut refused) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert!(
                        e.to_string().contains("service 'nope' is not registered"),
                        "{e}"
                    );
                    refused += 1;
                }
            }
        }
        assert_eq!((ok, refused), (32, 8));
        assert_eq!(store.list_changes(&query()).await.unwrap().len(), 32);
    }
);

conformance!(
    list_filters_order_and_pages,
    |store: Arc<dyn Store>| async move {
        let mut all = Vec::new();
        for i in 0..25 {
            let service = if i % 2 == 0 { "shop" } else { "cart" };
            let env = if i % 3 == 0 { "prod" } else { "stage" };
            let kind = if i % 5 == 0 {
                ChangeKind::Rollback
            } else {
                ChangeKind::Deploy
            };
            // Pairs share a start time so the id breaks ties.
            let c = change(service, env, kind, at(i / 2));
            store.insert_change(&c).await.unwrap();
            all.push(c);
        }
        all.sort_by_key(|c| std::cmp::Reverse((c.started_at, c.id)));

        let listed = store.list_changes(&query()).await.unwrap();
        assert_eq!(
            listed.iter().map(|c| c.id).collect::<Vec<_>>(),
            all.iter().map(|c| c.id).collect::<Vec<_>>()
        );

        // Pages of 7 walk the whole list without gaps or repeats.
        let mut paged = Vec::new();
        let mut q = ChangeQuery {
            limit: 7,
            ..query()
        };
        loop {
            let page = store.list_changes(&q).await.unwrap();
            paged.extend(page.iter().map(|c| c.id));
            match page.last() {
                Some(last) if page.len() == 7 => q.cursor = Some(Cursor::after(last)),
                _ => break,
            }
        }
        assert_eq!(paged, all.iter().map(|c| c.id).collect::<Vec<_>>());

        let check = |q: ChangeQuery, predicate: Box<dyn Fn(&Change) -> bool>| {
            let store = store.clone();
            let expected: Vec<Ulid> = all.iter().filter(|c| predicate(c)).map(|c| c.id).collect();
            async move {
                let got: Vec<Ulid> = store
                    .list_changes(&q)
                    .await
                    .unwrap()
                    .iter()
                    .map(|c| c.id)
                    .collect();
                assert_eq!(got, expected, "{q:?}");
            }
        };
        check(
            ChangeQuery {
                service: Some("shop".into()),
                ..query()
            },
            Box::new(|c| c.service.as_deref() == Some("shop")),
        )
        .await;
        check(
            ChangeQuery {
                environment: Some("prod".into()),
                ..query()
            },
            Box::new(|c| c.environment.as_deref() == Some("prod")),
        )
        .await;
        check(
            ChangeQuery {
                kind: Some(ChangeKind::Rollback),
                ..query()
            },
            Box::new(|c| c.kind == ChangeKind::Rollback),
        )
        .await;
        check(
            ChangeQuery {
                status: Some(ChangeStatus::Failed),
                ..query()
            },
            Box::new(|_| false),
        )
        .await;
        check(
            ChangeQuery {
                since: Some(at(3)),
                until: Some(at(8)),
                ..query()
            },
            Box::new(|c| c.started_at >= at(3) && c.started_at < at(8)),
        )
        .await;
        check(
            ChangeQuery {
                service: Some("cart".into()),
                environment: Some("stage".into()),
                since: Some(at(5)),
                ..query()
            },
            Box::new(|c| {
                c.service.as_deref() == Some("cart")
                    && c.environment.as_deref() == Some("stage")
                    && c.started_at >= at(5)
            }),
        )
        .await;
    }
);

conformance!(
    tags_select_like_graphite,
    |store: Arc<dyn Store>| async move {
        let a = change("shop", "prod", ChangeKind::Deploy, at(1));
        let b = change("cart", "prod", ChangeKind::Deploy, at(2));
        let mut c = change("shop", "stage", ChangeKind::Flag, at(3));
        c.metadata = Default::default();
        let old = change("shop", "prod", ChangeKind::Deploy, at(-100));
        for x in [&a, &b, &c, &old] {
            store.insert_change(x).await.unwrap();
        }
        let ids = |v: Vec<Change>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let window = (at(0), at(10));
        let get = |t: Vec<String>, m: TagMatch| {
            let store = store.clone();
            async move {
                ids(store
                    .changes_by_tags(&t, m, window.0, window.1, 100)
                    .await
                    .unwrap())
            }
        };
        assert_eq!(get(tags(&["shop"]), TagMatch::All).await, vec![c.id, a.id]);
        assert_eq!(
            get(tags(&["shop", "prod"]), TagMatch::All).await,
            vec![a.id]
        );
        assert_eq!(
            get(tags(&["cart", "flag"]), TagMatch::Any).await,
            vec![c.id, b.id]
        );
        assert_eq!(
            get(tags(&["hotfix"]), TagMatch::All).await,
            vec![b.id, a.id]
        );
        assert_eq!(get(vec![], TagMatch::All).await, vec![c.id, b.id, a.id]);
        assert_eq!(
            get(tags(&["nope"]), TagMatch::All).await,
            Vec::<Ulid>::new()
        );
        // The limit keeps the newest.
        let newest = store
            .changes_by_tags(&[], TagMatch::All, window.0, window.1, 2)
            .await
            .unwrap();
        assert_eq!(ids(newest), vec![c.id, b.id]);
    }
);

conformance!(
    updates_keep_history_and_rules,
    |store: Arc<dyn Store>| async move {
        let mut c = change("shop", "prod", ChangeKind::Deploy, at(0));
        c.status = ChangeStatus::InProgress;
        c.finished_at = None;
        store.insert_change(&c).await.unwrap();
        let done = store
            .update_change(
                c.id,
                &ChangePatch {
                    status: Some(ChangeStatus::Succeeded),
                    ..Default::default()
                },
                "alice",
                at(5),
            )
            .await
            .unwrap();
        assert_eq!(done.status, ChangeStatus::Succeeded);
        assert_eq!(done.finished_at, Some(at(5)));
        let again = store
            .update_change(
                c.id,
                &ChangePatch {
                    description: Some("fine".into()),
                    ..Default::default()
                },
                "bob",
                at(6),
            )
            .await
            .unwrap();
        let history = again.history.clone().unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!((history[0].actor.as_str(), history[0].at), ("alice", at(5)));
        assert_eq!(history[0].fields["status"], "succeeded");
        assert_eq!(history[1].fields["description"], "fine");
        assert_eq!(store.get_change(c.id).await.unwrap().unwrap(), again);

        let reopen = ChangePatch {
            status: Some(ChangeStatus::InProgress),
            ..Default::default()
        };
        let err = store
            .update_change(c.id, &reopen, "eve", at(7))
            .await
            .unwrap_err();
        // Well formed, but it collides with the change as stored.
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert_eq!(
            store.get_change(c.id).await.unwrap().unwrap(),
            again,
            "refused update changes nothing"
        );

        let missing = store
            .update_change(Ulid::new(), &reopen, "eve", at(7))
            .await
            .unwrap_err();
        assert!(matches!(missing, StoreError::NotFound(_)), "{missing}");
    }
);

conformance!(stream_events_in_order, |store: Arc<dyn Store>| async move {
    let start = store.last_event_seq().await.unwrap();
    let mut woken = store.subscribe();
    woken.borrow_and_update();
    let mut c = change("shop", "prod", ChangeKind::Deploy, at(0));
    c.status = ChangeStatus::InProgress;
    c.finished_at = None;
    store.insert_change(&c).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), woken.changed())
        .await
        .expect("a commit wakes subscribers")
        .unwrap();
    store
        .update_change(
            c.id,
            &ChangePatch {
                status: Some(ChangeStatus::Failed),
                ..Default::default()
            },
            "ci",
            at(1),
        )
        .await
        .unwrap();
    let events = store.events_after(start, 100).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].kind, ChangeEventKind::Created);
    assert_eq!(
        events[0].change.status,
        ChangeStatus::InProgress,
        "events carry the state of their time"
    );
    assert_eq!(events[1].kind, ChangeEventKind::Updated);
    assert_eq!(events[1].change.status, ChangeStatus::Failed);
    assert!(events[0].seq < events[1].seq);
    assert_eq!(
        store.events_after(events[0].seq, 100).await.unwrap().len(),
        1
    );
    assert_eq!(store.last_event_seq().await.unwrap(), events[1].seq);
    assert_eq!(
        store
            .prune_events(Utc::now() + chrono::Duration::minutes(1))
            .await
            .unwrap(),
        2
    );
    assert!(store.events_after(start, 100).await.unwrap().is_empty());
});

conformance!(
    concurrent_writers_lose_nothing,
    |store: Arc<dyn Store>| async move {
        let start = store.last_event_seq().await.unwrap();
        let mut tasks = Vec::new();
        for w in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    let c = change(&format!("svc{w}"), "prod", ChangeKind::Deploy, at(i));
                    store.insert_change(&c).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let events = store.events_after(start, 1000).await.unwrap();
        assert_eq!(events.len(), 200);
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(
            store
                .list_changes(&ChangeQuery {
                    limit: 1000,
                    ..query()
                })
                .await
                .unwrap()
                .len(),
            200
        );
    }
);

conformance!(services_lifecycle, |store: Arc<dyn Store>| async move {
    let new = NewService {
        name: "shop".into(),
        environments: vec!["dev".into(), "stage".into(), "prod".into()],
    };
    let created = store.create_service(&new, at(0)).await.unwrap();
    assert_eq!(created.environments, vec!["dev", "stage", "prod"]);
    let err = store.create_service(&new, at(0)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        store.list_environments().await.unwrap(),
        vec!["dev", "prod", "stage"]
    );

    // A service first seen in a change gets its pipeline when created explicitly.
    store
        .insert_change(&change("cart", "prod", ChangeKind::Deploy, at(0)))
        .await
        .unwrap();
    let cart = store
        .create_service(
            &NewService {
                name: "cart".into(),
                environments: vec!["prod".into()],
            },
            at(1),
        )
        .await
        .unwrap();
    assert_eq!(cart.environments, vec!["prod"]);
    let names: Vec<String> = store
        .list_services()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["cart", "shop"]);

    let err = store.delete_service("cart", false).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)) && err.to_string().contains("--force"),
        "{err}"
    );
    store.delete_service("cart", true).await.unwrap();
    store.delete_service("shop", false).await.unwrap();
    assert!(store.get_service("shop").await.unwrap().is_none());
    assert_eq!(
        store.list_changes(&query()).await.unwrap().len(),
        1,
        "changes stay in the log"
    );
    let err = store.delete_service("shop", false).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
});

fn token(name: &str, scopes: &str) -> TokenInfo {
    TokenInfo {
        name: name.into(),
        scopes: Scope::parse_list(scopes).unwrap(),
        created_at: at(0),
        expires_at: Some(at(60)),
        created_by: "admin".into(),
    }
}

conformance!(tokens_lifecycle, |store: Arc<dyn Store>| async move {
    assert!(store
        .bootstrap_admin_token(&token("admin", "admin"), "d0")
        .await
        .unwrap());
    assert!(
        !store
            .bootstrap_admin_token(&token("admin2", "admin"), "d00")
            .await
            .unwrap(),
        "only on an empty store"
    );
    let ci = token("ci", "read,write:shop@prod");
    store.create_token(&ci, "d1").await.unwrap();
    let err = store.create_token(&ci, "d2").await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let found = store.token_by_digest("d1").await.unwrap().unwrap();
    assert_eq!(found.info, ci);
    assert!(!found.revoked);
    assert!(store.token_by_digest("nope").await.unwrap().is_none());
    let names: Vec<String> = store
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["admin", "ci"]);

    store.revoke_token("ci", at(1)).await.unwrap();
    assert!(store.token_by_digest("d1").await.unwrap().unwrap().revoked);
    assert!(matches!(
        store.revoke_token("ci", at(2)).await.unwrap_err(),
        StoreError::NotFound(_)
    ));
    // The name is free again once revoked.
    store.create_token(&ci, "d3").await.unwrap();
});

/// A session created at `created` (minutes), idle until `idle`, ending by `ends`.
fn session(id: &str, token: &str, created: i64, idle: i64, ends: i64) -> SessionRecord {
    SessionRecord {
        id_digest: format!("{id:0>64}"),
        token_name: token.into(),
        token_digest: format!("digest-of-{token}"),
        csrf_secret: format!("csrf-{id}"),
        created_at: at(created),
        last_seen_at: at(created),
        idle_expires_at: at(idle),
        expires_at: at(ends),
        user_agent: None,
    }
}

fn session_ids(sessions: &[SessionRecord]) -> Vec<String> {
    sessions
        .iter()
        .map(|s| s.id_digest.trim_start_matches('0').to_string())
        .collect()
}

conformance!(session_round_trip, |store: Arc<dyn Store>| async move {
    // Every field, with times to the microsecond.
    let micro = chrono::Duration::microseconds(123_457);
    let full = SessionRecord {
        id_digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        token_name: "alice".into(),
        token_digest: "digest-of-alice".to_string(),
        csrf_secret: "c2VjcmV0LWNzcmYtc2VjcmV0LW9mLTMyLWJ5dGVzIQ".into(),
        created_at: at(0) + micro,
        last_seen_at: at(1) + micro,
        idle_expires_at: at(31) + micro,
        expires_at: at(720) + micro,
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0".into()),
    };
    store.create_session(&full).await.unwrap();
    let bare = session("b", "bob", 2, 32, 722);
    store.create_session(&bare).await.unwrap();
    assert_eq!(
        store.get_session(&full.id_digest).await.unwrap(),
        Some(full.clone())
    );
    assert_eq!(
        store.get_session(&bare.id_digest).await.unwrap(),
        Some(bare.clone())
    );
    assert_eq!(store.get_session("nope").await.unwrap(), None);
    // An id digest is taken once.
    let again = SessionRecord {
        token_name: "mallory".into(),
        ..full.clone()
    };
    let err = store.create_session(&again).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        store.get_session(&full.id_digest).await.unwrap(),
        Some(full.clone())
    );
    // The secret stays out of debug output.
    assert!(!format!("{full:?}").contains(&full.csrf_secret));
});

conformance!(
    session_get_ignores_expiry,
    |store: Arc<dyn Store>| async move {
        // Long expired, idle and absolute: still returned, the caller decides.
        let old = session("a", "alice", 0, 1, 2);
        store.create_session(&old).await.unwrap();
        assert_eq!(store.get_session(&old.id_digest).await.unwrap(), Some(old));
    }
);

conformance!(
    session_touch_moves_last_seen_and_idle_expiry,
    |store: Arc<dyn Store>| async move {
        let s = session("a", "alice", 0, 30, 720);
        store.create_session(&s).await.unwrap();
        let other = session("b", "alice", 0, 30, 720);
        store.create_session(&other).await.unwrap();
        assert!(store
            .touch_session(&s.id_digest, at(10), at(40))
            .await
            .unwrap());
        let got = store.get_session(&s.id_digest).await.unwrap().unwrap();
        assert_eq!(
            got,
            SessionRecord {
                last_seen_at: at(10),
                idle_expires_at: at(40),
                ..s.clone()
            }
        );
        // Only that session moved.
        assert_eq!(
            store.get_session(&other.id_digest).await.unwrap(),
            Some(other)
        );
        assert!(!store.touch_session("nope", at(10), at(40)).await.unwrap());
        assert_eq!(store.get_session("nope").await.unwrap(), None);
    }
);

conformance!(session_delete, |store: Arc<dyn Store>| async move {
    let a = session("a", "alice", 0, 30, 720);
    let b = session("b", "alice", 1, 30, 720);
    store.create_session(&a).await.unwrap();
    store.create_session(&b).await.unwrap();
    assert!(store.delete_session(&a.id_digest).await.unwrap());
    assert_eq!(store.get_session(&a.id_digest).await.unwrap(), None);
    assert!(!store.delete_session(&a.id_digest).await.unwrap());
    assert!(!store.delete_session("nope").await.unwrap());
    assert_eq!(store.get_session(&b.id_digest).await.unwrap(), Some(b));
    // The digest is free again.
    store.create_session(&a).await.unwrap();
});

conformance!(delete_token_sessions_ends_only_that_tokens, |store: Arc<
    dyn Store,
>| async move {
    for (id, token) in [
        ("a1", "alice"),
        ("b1", "bob"),
        ("a2", "alice"),
        ("a3", "alice"),
    ] {
        store
            .create_session(&session(id, token, 0, 30, 720))
            .await
            .unwrap();
    }
    assert_eq!(store.delete_token_sessions("alice").await.unwrap(), 3);
    assert_eq!(
        session_ids(&store.list_sessions().await.unwrap()),
        vec!["b1"]
    );
    assert_eq!(store.delete_token_sessions("alice").await.unwrap(), 0);
    assert_eq!(store.delete_token_sessions("nobody").await.unwrap(), 0);
    assert_eq!(store.delete_token_sessions("bob").await.unwrap(), 1);
    assert!(store.list_sessions().await.unwrap().is_empty());
});

conformance!(
    sessions_listed_newest_first,
    |store: Arc<dyn Store>| async move {
        assert!(store.list_sessions().await.unwrap().is_empty());
        // Created out of order; two at the same instant come by id digest, descending.
        for (id, created) in [("b", 5), ("d", 1), ("a", 9), ("c", 5), ("e", 0)] {
            store
                .create_session(&session(id, "alice", created, 1000, 1000))
                .await
                .unwrap();
        }
        let listed = store.list_sessions().await.unwrap();
        assert_eq!(session_ids(&listed), vec!["a", "c", "b", "d", "e"]);
        // Listing returns whole records, expired ones included.
        assert_eq!(listed[0], session("a", "alice", 9, 1000, 1000));
    }
);

conformance!(prune_sessions_by_idle_and_absolute_expiry, |store: Arc<
    dyn Store,
>| async move {
    // (id, created, idle expiry, absolute expiry)
    for (id, created, idle, ends) in [
        ("idle10", 0, 10, 100),
        ("abs20", 1, 50, 20),
        ("idle30", 2, 30, 40),
        ("live", 3, 60, 60),
    ] {
        store
            .create_session(&session(id, "alice", created, idle, ends))
            .await
            .unwrap();
    }
    assert_eq!(store.prune_sessions(at(9)).await.unwrap(), 0);
    // An expiry equal to now has passed.
    assert_eq!(store.prune_sessions(at(10)).await.unwrap(), 1);
    assert_eq!(
        session_ids(&store.list_sessions().await.unwrap()),
        vec!["live", "idle30", "abs20"]
    );
    // The absolute expiry ends a session whose idle expiry is later.
    assert_eq!(store.prune_sessions(at(20)).await.unwrap(), 1);
    assert_eq!(
        session_ids(&store.list_sessions().await.unwrap()),
        vec!["live", "idle30"]
    );
    // A touch moves the idle expiry, so the session outlives its old one...
    assert!(store
        .touch_session(&format!("{:0>64}", "idle30"), at(25), at(38))
        .await
        .unwrap());
    assert_eq!(store.prune_sessions(at(35)).await.unwrap(), 0);
    // ...but not its absolute expiry.
    assert!(store
        .touch_session(&format!("{:0>64}", "idle30"), at(37), at(80))
        .await
        .unwrap());
    assert_eq!(store.prune_sessions(at(40)).await.unwrap(), 1);
    assert_eq!(
        session_ids(&store.list_sessions().await.unwrap()),
        vec!["live"]
    );
    assert_eq!(store.prune_sessions(at(59)).await.unwrap(), 0);
    assert_eq!(store.prune_sessions(at(1000)).await.unwrap(), 1);
    assert!(store.list_sessions().await.unwrap().is_empty());
});

conformance!(revoking_a_token_ends_its_sessions, |store: Arc<
    dyn Store,
>| async move {
    store
        .create_token(&token("alice", "admin"), "d-alice")
        .await
        .unwrap();
    store
        .create_token(&token("bob", "read"), "d-bob")
        .await
        .unwrap();
    store
        .create_token(&token("shop-prod", "client:shop@prod"), "d-client")
        .await
        .unwrap();
    for (id, token, created) in [
        ("a1", "alice", 0),
        ("b1", "bob", 1),
        ("a2", "alice", 2),
        ("c1", "shop-prod", 3),
    ] {
        store
            .create_session(&session(id, token, created, 30, 720))
            .await
            .unwrap();
    }
    store.revoke_token("alice", at(1)).await.unwrap();
    assert_eq!(
        session_ids(&store.list_sessions().await.unwrap()),
        vec!["c1", "b1"]
    );
    // The SDK-token path of revocation ends its sessions too.
    store.revoke_token("shop-prod", at(2)).await.unwrap();
    assert_eq!(
        session_ids(&store.list_sessions().await.unwrap()),
        vec!["b1"]
    );
    // A revocation that fails (no such active token) deletes nothing.
    store
        .create_session(&session("a3", "alice", 4, 30, 720))
        .await
        .unwrap();
    assert!(matches!(
        store.revoke_token("alice", at(4)).await.unwrap_err(),
        StoreError::NotFound(_)
    ));
    assert_eq!(
        session_ids(&store.list_sessions().await.unwrap()),
        vec!["a3", "b1"]
    );
});

conformance!(leases_are_exclusive_until_expiry, |store: Arc<
    dyn Store,
>| async move {
    let ttl = Duration::from_secs(30);
    assert!(store
        .try_acquire_lease("rollout:1", "a", ttl, at(0))
        .await
        .unwrap());
    assert!(!store
        .try_acquire_lease("rollout:1", "b", ttl, at(0))
        .await
        .unwrap());
    assert!(
        store
            .try_acquire_lease("rollout:1", "a", ttl, at(0))
            .await
            .unwrap(),
        "renewal"
    );
    assert!(store
        .try_acquire_lease("rollout:2", "b", ttl, at(0))
        .await
        .unwrap());
    // After expiry another holder takes over.
    assert!(store
        .try_acquire_lease("rollout:1", "b", ttl, at(1))
        .await
        .unwrap());
    assert!(!store
        .try_acquire_lease("rollout:1", "a", ttl, at(1))
        .await
        .unwrap());
    store.release_lease("rollout:1", "a").await.unwrap();
    assert!(
        !store
            .try_acquire_lease("rollout:1", "a", ttl, at(1))
            .await
            .unwrap(),
        "only the holder releases"
    );
    store.release_lease("rollout:1", "b").await.unwrap();
    assert!(store
        .try_acquire_lease("rollout:1", "a", ttl, at(1))
        .await
        .unwrap());
});

conformance!(
    concurrent_lease_has_one_winner,
    |store: Arc<dyn Store>| async move {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .try_acquire_lease("leader", &format!("h{i}"), Duration::from_secs(60), at(0))
                    .await
                    .unwrap()
            }));
        }
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap());
        }
        assert_eq!(winners, 1);
    }
);

// ---- migration jobs ----

/// A job with every optional field set, so a round trip checks each column.
fn migrate_job(database: &str, state: JobState, created: DateTime<Utc>) -> Job {
    let micros = chrono::Duration::microseconds(123_456);
    Job {
        id: Ulid::new(),
        database: database.into(),
        kind: JobKind::Rebuild,
        environment: "prod".into(),
        services: vec!["shop".into(), "cart".into()],
        change_id: Ulid::new(),
        state,
        control: Some("pause".into()),
        requested_by: "ann".into(),
        created_at: created + micros,
        started_at: Some(created + chrono::Duration::seconds(1) + micros),
        finished_at: Some(created + chrono::Duration::seconds(2)),
        updated_at: created + chrono::Duration::seconds(3),
        holder: Some("server-1".into()),
        error: Some("lock timeout on orders".into()),
        report: Some(serde_json::json!({"versions": [1, 2], "rows": 1200, "took_ms": 35})),
        version: 1,
        spec: JobSpec {
            phase: "expand".into(),
            files: vec![
                JobFile {
                    path: "expand/0001_add_email.sql".into(),
                    text: "ALTER TABLE users ADD COLUMN email TEXT;".into(),
                },
                JobFile {
                    path: "expand/0001_add_email.backfill.sql".into(),
                    text: "UPDATE users SET email = '' WHERE email IS NULL;".into(),
                },
            ],
            to: Some(7),
            table: Some("orders".into()),
            alter: Some("ADD COLUMN note TEXT".into()),
            drop_old: true,
            repoint_foreign_keys: true,
            force: true,
            reason: Some("reviewed by db team".into()),
            out_of_order: true,
            assume_done: true,
            rerun: false,
            lock_timeout_ms: Some(2_000),
            lock_retries: Some(5),
            batch: Some(500),
        },
    }
}

/// A job as a list shows it: without its migration files.
fn listed(job: &Job) -> Job {
    let mut job = job.clone();
    job.spec.files.clear();
    job
}

conformance!(migrate_job_round_trip, |store: Arc<dyn Store>| async move {
    let full = migrate_job("shop", JobState::Running, at(0));
    store.insert_migrate_job(&full).await.unwrap();
    assert_eq!(
        store.get_migrate_job(full.id).await.unwrap().as_ref(),
        Some(&full)
    );

    // The least a job can carry.
    let bare = Job {
        id: Ulid::new(),
        kind: JobKind::Apply,
        services: vec![],
        state: JobState::Queued,
        control: None,
        started_at: None,
        finished_at: None,
        holder: None,
        error: None,
        report: None,
        version: 3,
        spec: JobSpec::default(),
        ..migrate_job("shop", JobState::Queued, at(1))
    };
    store.insert_migrate_job(&bare).await.unwrap();
    assert_eq!(
        store.get_migrate_job(bare.id).await.unwrap().as_ref(),
        Some(&bare),
        "stored with its version as given"
    );
    assert!(store.get_migrate_job(Ulid::new()).await.unwrap().is_none());
});

conformance!(
    migrate_jobs_listed_newest_first_by_database_and_state,
    |store: Arc<dyn Store>| async move {
        assert!(store
            .list_migrate_jobs(None, &[], 100)
            .await
            .unwrap()
            .is_empty());
        let mut jobs = vec![
            migrate_job("shop", JobState::Succeeded, at(0)),
            migrate_job("billing", JobState::Failed, at(1)),
            migrate_job("shop", JobState::Failed, at(2)),
            migrate_job("shop", JobState::Queued, at(3)),
            migrate_job("billing", JobState::Interrupted, at(3)),
        ];
        // Two jobs created in the same microsecond: the id breaks the tie.
        jobs[4].created_at = jobs[3].created_at;
        for job in &jobs {
            store.insert_migrate_job(job).await.unwrap();
        }
        let newest_first = |picked: Vec<&Job>| {
            let mut picked: Vec<Job> = picked.into_iter().map(listed).collect();
            picked.sort_by_key(|j| std::cmp::Reverse((j.created_at, j.id)));
            picked
        };

        let all = store.list_migrate_jobs(None, &[], 100).await.unwrap();
        assert_eq!(all, newest_first(jobs.iter().collect()));
        // Lists leave the scripts out and keep the rest of the spec.
        assert!(all.iter().all(|j| j.spec.files.is_empty()));
        assert_eq!(all[0].spec.phase, "expand");
        assert_eq!(all[0].spec.reason.as_deref(), Some("reviewed by db team"));
        assert_eq!(all[0].spec.batch, Some(500));
        // …while the job itself still has them.
        let got = store.get_migrate_job(all[0].id).await.unwrap().unwrap();
        assert_eq!(got.spec.files.len(), 2);

        let shop = store
            .list_migrate_jobs(Some("shop"), &[], 100)
            .await
            .unwrap();
        assert_eq!(
            shop,
            newest_first(jobs.iter().filter(|j| j.database == "shop").collect())
        );

        let ended = [JobState::Failed, JobState::Interrupted];
        let failed = store.list_migrate_jobs(None, &ended, 100).await.unwrap();
        assert_eq!(
            failed,
            newest_first(jobs.iter().filter(|j| ended.contains(&j.state)).collect())
        );

        let shop_failed = store
            .list_migrate_jobs(Some("shop"), &ended, 100)
            .await
            .unwrap();
        assert_eq!(shop_failed, vec![listed(&jobs[2])]);

        let two = store.list_migrate_jobs(None, &[], 2).await.unwrap();
        assert_eq!(two, all[..2].to_vec());

        assert!(store
            .list_migrate_jobs(Some("nowhere"), &[], 100)
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .list_migrate_jobs(Some("billing"), &[JobState::Running], 100)
            .await
            .unwrap()
            .is_empty());
    }
);

conformance!(migrate_job_update_is_compare_and_set, |store: Arc<
    dyn Store,
>| async move {
    let queued = Job {
        state: JobState::Queued,
        control: None,
        started_at: None,
        finished_at: None,
        holder: None,
        error: None,
        report: None,
        ..migrate_job("shop", JobState::Queued, at(0))
    };
    store.insert_migrate_job(&queued).await.unwrap();

    // The server takes it up: every mutable field is written.
    let mut spec = queued.spec.clone();
    spec.files.pop();
    spec.lock_retries = None;
    let running = Job {
        state: JobState::Running,
        control: Some("abort".into()),
        started_at: Some(at(1)),
        finished_at: Some(at(2)),
        updated_at: at(2),
        holder: Some("server-2".into()),
        error: Some("retrying".into()),
        report: Some(serde_json::json!({"statements": 3})),
        spec,
        ..queued.clone()
    };
    let stored = store.update_migrate_job(&running).await.unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(
        stored,
        Job {
            version: 2,
            ..running.clone()
        }
    );
    assert_eq!(
        store.get_migrate_job(queued.id).await.unwrap().as_ref(),
        Some(&stored)
    );

    // A person who read version 1 loses: nothing is written.
    let late = Job {
        state: JobState::Aborted,
        control: None,
        holder: None,
        updated_at: at(3),
        ..queued.clone()
    };
    let err = store.update_migrate_job(&late).await.unwrap_err();
    assert!(matches!(err, StoreError::Stale(_)), "{err}");
    assert_eq!(
        store.get_migrate_job(queued.id).await.unwrap().as_ref(),
        Some(&stored),
        "nothing changed"
    );

    // From the version it now has, the write goes through; fields can be cleared.
    let done = Job {
        state: JobState::Succeeded,
        control: None,
        holder: None,
        error: None,
        report: None,
        finished_at: Some(at(4)),
        updated_at: at(4),
        ..stored.clone()
    };
    let done = store.update_migrate_job(&done).await.unwrap();
    assert_eq!(done.version, 3);
    assert_eq!(
        store.get_migrate_job(queued.id).await.unwrap().as_ref(),
        Some(&done)
    );

    let unknown = Job {
        id: Ulid::new(),
        ..queued.clone()
    };
    let err = store.update_migrate_job(&unknown).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(store.get_migrate_job(unknown.id).await.unwrap().is_none());
});

conformance!(migrate_log_appends_in_order_and_pages, |store: Arc<
    dyn Store,
>| async move {
    let a = migrate_job("shop", JobState::Running, at(0));
    let b = migrate_job("billing", JobState::Running, at(0));
    store.insert_migrate_job(&a).await.unwrap();
    store.insert_migrate_job(&b).await.unwrap();
    let lines = |prefix: &str, from: i64, n: i64| -> Vec<(DateTime<Utc>, String)> {
        (from..from + n)
            .map(|i| {
                (
                    at(i) + chrono::Duration::microseconds(7),
                    format!("{prefix} {i}"),
                )
            })
            .collect()
    };

    assert_eq!(store.append_migrate_log(a.id, &[]).await.unwrap(), 0);
    assert!(store
        .migrate_log_after(a.id, 0, 100)
        .await
        .unwrap()
        .is_empty());

    let first = store
        .append_migrate_log(a.id, &lines("a", 0, 3))
        .await
        .unwrap();
    let of_b = store
        .append_migrate_log(b.id, &lines("b", 0, 2))
        .await
        .unwrap();
    let last = store
        .append_migrate_log(a.id, &lines("a", 3, 2))
        .await
        .unwrap();
    assert!(
        0 < first && first < of_b && of_b < last,
        "{first} {of_b} {last}"
    );

    let log = store.migrate_log_after(a.id, 0, 100).await.unwrap();
    let expected = lines("a", 0, 5);
    assert_eq!(
        log.iter()
            .map(|l| (l.at, l.text.clone()))
            .collect::<Vec<_>>(),
        expected,
        "every line of a, in the order given, and none of b"
    );
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(log[2].seq, first);
    assert_eq!(log[4].seq, last);

    // Paging: `after` is the last seq seen, `limit` caps each page.
    let page = store.migrate_log_after(a.id, 0, 2).await.unwrap();
    assert_eq!(page, log[..2].to_vec());
    let page = store.migrate_log_after(a.id, page[1].seq, 2).await.unwrap();
    assert_eq!(page, log[2..4].to_vec());
    let page = store.migrate_log_after(a.id, page[1].seq, 2).await.unwrap();
    assert_eq!(page, log[4..].to_vec());
    assert!(store
        .migrate_log_after(a.id, last, 100)
        .await
        .unwrap()
        .is_empty());

    let log_b = store.migrate_log_after(b.id, 0, 100).await.unwrap();
    assert_eq!(
        log_b.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        vec!["b 0", "b 1"]
    );
    assert_eq!(log_b[1].seq, of_b);
    assert!(store
        .migrate_log_after(Ulid::new(), 0, 100)
        .await
        .unwrap()
        .is_empty());
});

/// A migration job row that cannot be read back (a hand edit) is `Corrupt`, naming the
/// column, on both backends.
#[tokio::test]
async fn corrupt_migrate_job_rows_name_the_column() {
    let job = migrate_job("shop", JobState::Queued, at(0));
    let cases = [
        ("state = 'exploded'", "migrate job state"),
        ("spec = '{not json'", "migrate job spec"),
        ("report = '['", "migrate job report"),
        ("services = 'shop'", "migrate job services"),
        ("kind = 'rename'", "migrate job kind"),
    ];

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gantry.db");
    let sqlite = gantry_store::SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap();
    sqlite.insert_migrate_job(&job).await.unwrap();
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    for (set, column) in cases {
        sqlx::query(&format!("UPDATE migrate_jobs SET {set}"))
            .execute(&raw)
            .await
            .unwrap();
        let err = sqlite.get_migrate_job(job.id).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains(column)),
            "sqlite {set}: {err}"
        );
        let err = sqlite.list_migrate_jobs(None, &[], 10).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "sqlite {set}: {err}");
        sqlx::query("DELETE FROM migrate_jobs")
            .execute(&raw)
            .await
            .unwrap();
        sqlite.insert_migrate_job(&job).await.unwrap();
    }
    raw.close().await;
    sqlite.close().await;

    let url = gantry_store::testing::fresh_postgres_url("corrupt_migrate_job").await;
    let pg = gantry_store::PostgresStore::open(&url, StoreOptions::default())
        .await
        .unwrap();
    pg.insert_migrate_job(&job).await.unwrap();
    let raw = sqlx::PgPool::connect(&url).await.unwrap();
    for (set, column) in cases {
        sqlx::query(&format!("UPDATE migrate_jobs SET {set}"))
            .execute(&raw)
            .await
            .unwrap();
        let err = pg.get_migrate_job(job.id).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains(column)),
            "postgres {set}: {err}"
        );
        let err = pg.list_migrate_jobs(None, &[], 10).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt(_)),
            "postgres {set}: {err}"
        );
        sqlx::query("DELETE FROM migrate_jobs")
            .execute(&raw)
            .await
            .unwrap();
        pg.insert_migrate_job(&job).await.unwrap();
    }
    raw.close().await;
    pg.close().await;
}

// ---- incidents ----

/// An incident with every field set that `state` allows (its clocks up to that state), all
/// timestamps with microseconds, so a round trip checks each part of the doc and each column.
fn incident(state: IncidentState, detected: DateTime<Utc>) -> Incident {
    let micros = chrono::Duration::microseconds(654_321);
    let step = match state {
        IncidentState::Open => 0,
        IncidentState::Acknowledged => 1,
        IncidentState::Mitigated => 2,
        IncidentState::Resolved => 3,
    };
    let clock = |n: i64| (step >= n).then(|| detected + chrono::Duration::minutes(5 * n) + micros);
    let suspect = Ulid::new();
    Incident {
        id: Ulid::new(),
        title: "checkout errors".into(),
        severity: Severity::Sev2,
        services: vec!["shop".into(), "cart".into()],
        environments: vec!["prod".into(), "eu-prod".into()],
        state,
        source: Source::Alert {
            monitor: "checkout-5xx".into(),
        },
        opened_by: "monitor:checkout-5xx".into(),
        impact_started_at: detected - chrono::Duration::minutes(4) + micros,
        detected_at: detected + micros,
        acknowledged_at: clock(1),
        mitigated_at: clock(2),
        resolved_at: clock(3),
        suspects: vec![
            Suspect {
                change: suspect,
                kind: "deploy".into(),
                service: Some("shop".into()),
                environment: Some("prod".into()),
                summary: "deploy shop 1.4.2 to prod".into(),
                started_at: detected - chrono::Duration::minutes(10) + micros,
                score: 0.794,
            },
            Suspect {
                change: Ulid::new(),
                kind: "config".into(),
                service: Some("cart".into()),
                environment: None,
                summary: "raise cart pool size".into(),
                started_at: detected - chrono::Duration::hours(3),
                score: 0.016,
            },
        ],
        cause: Some(Cause::Change { change: suspect }),
        postmortem: Some("https://wiki.example.com/pm/42".into()),
        updated_at: detected + chrono::Duration::minutes(16) + micros,
        version: 1,
    }
}

fn entry(kind: &str, at: DateTime<Utc>, text: &str, change: Option<Ulid>) -> NewTimelineEntry {
    NewTimelineEntry {
        at,
        kind: kind.into(),
        actor: "ann".into(),
        text: text.into(),
        change,
    }
}

/// A timeline as appended (without the seqs the store gave it).
fn appended(timeline: &[TimelineEntry]) -> Vec<NewTimelineEntry> {
    timeline
        .iter()
        .map(|e| NewTimelineEntry {
            at: e.at,
            kind: e.kind.clone(),
            actor: e.actor.clone(),
            text: e.text.clone(),
            change: e.change,
        })
        .collect()
}

conformance!(incident_round_trip, |store: Arc<dyn Store>| async move {
    let full = incident(IncidentState::Resolved, at(0));
    let opened = vec![
        entry(
            "opened",
            full.detected_at,
            "opened by monitor checkout-5xx",
            None,
        ),
        entry(
            "change",
            full.suspects[0].started_at,
            "suspect: deploy shop 1.4.2 to prod",
            Some(full.suspects[0].change),
        ),
    ];
    store.insert_incident(&full, &opened).await.unwrap();
    assert_eq!(
        store.get_incident(full.id).await.unwrap().as_ref(),
        Some(&full)
    );
    let timeline = store.incident_timeline(full.id).await.unwrap();
    assert_eq!(appended(&timeline), opened);
    assert!(0 < timeline[0].seq && timeline[0].seq < timeline[1].seq);

    // Every other source, cause, severity and state; the least an incident can carry.
    let variants = [
        (Source::Manual, None, Severity::Sev1, IncidentState::Open),
        (
            Source::Verdict {
                verdict: Ulid::new(),
            },
            Some(Cause::NotAChange {
                what: "a provider outage".into(),
            }),
            Severity::Sev3,
            IncidentState::Acknowledged,
        ),
        (
            Source::Alert {
                monitor: "latency-p99".into(),
            },
            Some(Cause::Change {
                change: Ulid::new(),
            }),
            Severity::Sev4,
            IncidentState::Mitigated,
        ),
    ];
    for (i, (source, cause, severity, state)) in variants.into_iter().enumerate() {
        let bare = Incident {
            id: Ulid::new(),
            severity,
            services: vec![],
            environments: vec![],
            source,
            cause,
            suspects: vec![],
            postmortem: None,
            version: 3,
            ..incident(state, at(i as i64 + 1))
        };
        store.insert_incident(&bare, &[]).await.unwrap();
        assert_eq!(
            store.get_incident(bare.id).await.unwrap().as_ref(),
            Some(&bare),
            "stored with its version as given"
        );
        assert!(store.incident_timeline(bare.id).await.unwrap().is_empty());
    }
    assert!(store.get_incident(Ulid::new()).await.unwrap().is_none());
    assert!(store
        .incident_timeline(Ulid::new())
        .await
        .unwrap()
        .is_empty());
});

conformance!(
    incidents_listed_newest_first_since_and_open,
    |store: Arc<dyn Store>| async move {
        assert!(store
            .list_incidents(None, false, 100)
            .await
            .unwrap()
            .is_empty());
        let mut incidents = vec![
            incident(IncidentState::Resolved, at(0)),
            incident(IncidentState::Open, at(10)),
            incident(IncidentState::Mitigated, at(20)),
            incident(IncidentState::Resolved, at(30)),
            incident(IncidentState::Acknowledged, at(30)),
        ];
        // Two incidents detected in the same microsecond: the id breaks the tie.
        incidents[4].detected_at = incidents[3].detected_at;
        for i in &incidents {
            store.insert_incident(i, &[]).await.unwrap();
        }
        let newest_first = |picked: Vec<&Incident>| {
            let mut picked: Vec<Incident> = picked.into_iter().cloned().collect();
            picked.sort_by_key(|i| std::cmp::Reverse((i.detected_at, i.id)));
            picked
        };

        let all = store.list_incidents(None, false, 100).await.unwrap();
        assert_eq!(all, newest_first(incidents.iter().collect()));

        let open = store.list_incidents(None, true, 100).await.unwrap();
        assert_eq!(
            open,
            newest_first(
                incidents
                    .iter()
                    .filter(|i| i.state != IncidentState::Resolved)
                    .collect()
            )
        );
        assert_eq!(open.len(), 3);

        // `since` counts the incident detected at that very microsecond.
        let since = incidents[2].detected_at;
        let recent = store.list_incidents(Some(since), false, 100).await.unwrap();
        assert_eq!(recent, newest_first(incidents[2..].iter().collect()));
        let later = store
            .list_incidents(Some(since + chrono::Duration::microseconds(1)), false, 100)
            .await
            .unwrap();
        assert_eq!(later, newest_first(incidents[3..].iter().collect()));

        let recent_open = store.list_incidents(Some(since), true, 100).await.unwrap();
        assert_eq!(
            recent_open,
            newest_first(vec![&incidents[2], &incidents[4]])
        );

        let two = store.list_incidents(None, false, 2).await.unwrap();
        assert_eq!(two, all[..2].to_vec());
        let one_open = store.list_incidents(Some(since), true, 1).await.unwrap();
        assert_eq!(one_open, recent_open[..1].to_vec());

        assert!(store
            .list_incidents(Some(at(60)), false, 100)
            .await
            .unwrap()
            .is_empty());
    }
);

conformance!(incident_update_is_compare_and_set, |store: Arc<
    dyn Store,
>| async move {
    let opened = Incident {
        suspects: vec![],
        cause: None,
        postmortem: None,
        ..incident(IncidentState::Open, at(0))
    };
    let first = vec![entry("opened", opened.detected_at, "opened by ann", None)];
    store.insert_incident(&opened, &first).await.unwrap();

    // Acknowledged, raised, widened, with suspects and a cause, detected earlier than
    // first thought: every field is written, and the columns lists filter on follow.
    let acked = Incident {
        title: "checkout and cart errors".into(),
        severity: Severity::Sev1,
        services: vec!["shop".into(), "cart".into(), "payments".into()],
        environments: vec!["prod".into()],
        state: IncidentState::Acknowledged,
        source: Source::Manual,
        opened_by: "bob".into(),
        impact_started_at: at(-9),
        detected_at: opened.detected_at - chrono::Duration::minutes(2),
        acknowledged_at: Some(at(5)),
        suspects: incident(IncidentState::Open, at(0)).suspects,
        cause: Some(Cause::NotAChange {
            what: "a traffic spike".into(),
        }),
        postmortem: Some("draft".into()),
        updated_at: at(5),
        ..opened.clone()
    };
    let ack = vec![entry("action", at(5), "acknowledged", None)];
    let stored = store.update_incident(&acked, &ack).await.unwrap();
    assert_eq!(
        stored,
        Incident {
            version: 2,
            ..acked.clone()
        }
    );
    assert_eq!(
        store.get_incident(opened.id).await.unwrap().as_ref(),
        Some(&stored)
    );
    assert!(store
        .list_incidents(Some(opened.detected_at), false, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .list_incidents(Some(acked.detected_at), true, 100)
            .await
            .unwrap(),
        vec![stored.clone()]
    );

    // A person who read version 1 loses: nothing is written, timeline entries included.
    let late = Incident {
        state: IncidentState::Resolved,
        acknowledged_at: Some(at(6)),
        mitigated_at: Some(at(6)),
        resolved_at: Some(at(6)),
        updated_at: at(6),
        ..opened.clone()
    };
    let err = store
        .update_incident(&late, &[entry("action", at(6), "resolved", None)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Stale(_)), "{err}");
    assert_eq!(
        store.get_incident(opened.id).await.unwrap().as_ref(),
        Some(&stored),
        "nothing changed"
    );
    assert_eq!(
        appended(&store.incident_timeline(opened.id).await.unwrap()),
        [first.clone(), ack.clone()].concat(),
        "no entry of the losing write"
    );
    assert_eq!(
        store.list_incidents(None, true, 100).await.unwrap().len(),
        1
    );

    // From the version it now has, the write goes through; fields can be cleared, and an
    // update may append nothing.
    let resolved = Incident {
        state: IncidentState::Resolved,
        mitigated_at: Some(at(7)),
        resolved_at: Some(at(7)),
        suspects: vec![],
        cause: None,
        postmortem: None,
        updated_at: at(7),
        ..stored.clone()
    };
    let resolved = store.update_incident(&resolved, &[]).await.unwrap();
    assert_eq!(resolved.version, 3);
    assert_eq!(
        store.get_incident(opened.id).await.unwrap().as_ref(),
        Some(&resolved)
    );
    assert!(store
        .list_incidents(None, true, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.list_incidents(None, false, 100).await.unwrap(),
        vec![resolved.clone()]
    );
    assert_eq!(store.incident_timeline(opened.id).await.unwrap().len(), 2);

    let unknown = Incident {
        id: Ulid::new(),
        ..opened.clone()
    };
    let err = store
        .update_incident(&unknown, &[entry("note", at(8), "lost", None)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(store.get_incident(unknown.id).await.unwrap().is_none());
    assert!(store
        .incident_timeline(unknown.id)
        .await
        .unwrap()
        .is_empty());
});

conformance!(incident_timelines_in_order_and_apart, |store: Arc<
    dyn Store,
>| async move {
    let a = incident(IncidentState::Open, at(0));
    let b = incident(IncidentState::Open, at(1));
    let tiny = chrono::Duration::microseconds(7);
    // Two entries at the same instant: the order appended decides.
    let a1 = vec![
        entry("opened", at(0) + tiny, "a opened", None),
        entry("alert", at(0) + tiny, "a alert", None),
    ];
    store.insert_incident(&a, &a1).await.unwrap();
    let b1 = vec![entry("opened", at(1) + tiny, "b opened", None)];
    store.insert_incident(&b, &b1).await.unwrap();
    // A change found later that started before the incident: seq orders a timeline, not `at`.
    let a2 = vec![
        entry(
            "change",
            at(-30) + tiny,
            "a suspect",
            Some(a.suspects[0].change),
        ),
        entry("note", at(2) + tiny, "a note", None),
    ];
    let a = store.update_incident(&a, &a2).await.unwrap();
    let b2 = vec![entry("note", at(2), "b note", None)];
    store.update_incident(&b, &b2).await.unwrap();
    let a3 = vec![entry("action", at(3), "a acknowledged", None)];
    let acked = Incident {
        state: IncidentState::Acknowledged,
        acknowledged_at: Some(at(3)),
        updated_at: at(3),
        ..a
    };
    store.update_incident(&acked, &a3).await.unwrap();

    let timeline_a = store.incident_timeline(acked.id).await.unwrap();
    assert_eq!(
        appended(&timeline_a),
        [a1, a2, a3].concat(),
        "every entry of a, in the order appended, and none of b"
    );
    assert!(timeline_a.windows(2).all(|w| w[0].seq < w[1].seq));
    let timeline_b = store.incident_timeline(b.id).await.unwrap();
    assert_eq!(appended(&timeline_b), [b1, b2].concat());
    // b's entries were appended between a's.
    assert!(timeline_a[1].seq < timeline_b[0].seq && timeline_b[0].seq < timeline_a[2].seq);
    assert!(timeline_a[3].seq < timeline_b[1].seq && timeline_b[1].seq < timeline_a[4].seq);
});

/// An incident row or timeline entry that cannot be read back (a hand edit) is `Corrupt`,
/// naming the column, on both backends.
#[tokio::test]
async fn corrupt_incident_rows_name_the_column() {
    let incident = incident(IncidentState::Open, at(0));
    let timeline = [entry("change", at(0), "suspect", Some(Ulid::new()))];
    let cases = [
        ("doc = '{not json'", "incident doc"),
        ("doc = '{}'", "incident doc"),
        // The doc no longer agrees with its row.
        ("version = 9", "incident doc"),
    ];
    macro_rules! check {
        ($backend:literal, $store:expr, $raw:expr) => {{
            let (store, raw) = (&$store, &$raw);
            store.insert_incident(&incident, &timeline).await.unwrap();
            for (set, column) in cases {
                sqlx::query(&format!("UPDATE incidents SET {set}"))
                    .execute(raw)
                    .await
                    .unwrap();
                let err = store.get_incident(incident.id).await.unwrap_err();
                assert!(
                    matches!(&err, StoreError::Corrupt(m) if m.contains(column)),
                    "{} {set}: {err}",
                    $backend
                );
                let err = store.list_incidents(None, false, 10).await.unwrap_err();
                assert!(
                    matches!(err, StoreError::Corrupt(_)),
                    "{} {set}: {err}",
                    $backend
                );
                sqlx::query("DELETE FROM incidents")
                    .execute(raw)
                    .await
                    .unwrap();
                store.insert_incident(&incident, &[]).await.unwrap();
            }
            sqlx::query("UPDATE incident_timeline SET change_id = 'nope'")
                .execute(raw)
                .await
                .unwrap();
            let err = store.incident_timeline(incident.id).await.unwrap_err();
            assert!(
                matches!(&err, StoreError::Corrupt(m) if m.contains("incident timeline change id")),
                "{} change_id: {err}",
                $backend
            );
        }};
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gantry.db");
    let sqlite = gantry_store::SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap();
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    check!("sqlite", sqlite, raw);
    raw.close().await;
    sqlite.close().await;

    let url = gantry_store::testing::fresh_postgres_url("corrupt_incident").await;
    let pg = gantry_store::PostgresStore::open(&url, StoreOptions::default())
        .await
        .unwrap();
    let raw = sqlx::PgPool::connect(&url).await.unwrap();
    check!("postgres", pg, raw);
    raw.close().await;
    pg.close().await;
}

// ---- monitors ----

fn ping(
    monitor: &str,
    at: DateTime<Utc>,
    kind: &str,
    exit_code: Option<i32>,
    body: &str,
) -> NewPing {
    NewPing {
        monitor: monitor.into(),
        at,
        kind: kind.into(),
        exit_code,
        body: body.into(),
    }
}

fn state(monitor: &str, series: &str, doc: &str, updated_at: DateTime<Utc>) -> MonitorStateRecord {
    MonitorStateRecord {
        monitor: monitor.into(),
        series: series.into(),
        doc: doc.into(),
        updated_at,
    }
}

fn transition(
    monitor: &str,
    series: &str,
    from: &str,
    to: &str,
    hard: bool,
    value: Option<f64>,
    at: DateTime<Utc>,
) -> NewTransition {
    NewTransition {
        monitor: monitor.into(),
        series: series.into(),
        from: from.into(),
        to: to.into(),
        hard,
        value,
        at,
    }
}

/// A stored transition as it was appended (without its seq).
fn appended_transition(t: &TransitionRecord) -> NewTransition {
    transition(&t.monitor, &t.series, &t.from, &t.to, t.hard, t.value, t.at)
}

/// A stored ping as it was inserted (without its seq).
fn inserted_ping(p: &PingRecord) -> NewPing {
    ping(&p.monitor, p.at, &p.kind, p.exit_code, &p.body)
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

conformance!(
    monitor_files_put_and_list,
    |store: Arc<dyn Store>| async move {
        assert!(store.list_monitor_files().await.unwrap().is_empty());
        let tiny = chrono::Duration::microseconds(3);
        assert_eq!(
            store
                .put_monitor_file("web", "[web-5xx]\n", "ann", at(0) + tiny)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .put_monitor_file("batch", "[nightly]\n", "bob", at(1))
                .await
                .unwrap(),
            None
        );
        // Replacing returns the text replaced, and the new author and time are kept.
        assert_eq!(
            store
                .put_monitor_file("web", "[web-5xx]\nfor = 3 # ünïcode\n", "cat", at(2) + tiny)
                .await
                .unwrap()
                .as_deref(),
            Some("[web-5xx]\n")
        );
        // The same text again still reports what it replaced.
        assert_eq!(
            store
                .put_monitor_file("batch", "[nightly]\n", "dan", at(3))
                .await
                .unwrap()
                .as_deref(),
            Some("[nightly]\n")
        );
        assert_eq!(
            store.list_monitor_files().await.unwrap(),
            vec![
                MonitorFileRecord {
                    source: "batch".into(),
                    text: "[nightly]\n".into(),
                    updated_by: "dan".into(),
                    updated_at: at(3),
                },
                MonitorFileRecord {
                    source: "web".into(),
                    text: "[web-5xx]\nfor = 3 # ünïcode\n".into(),
                    updated_by: "cat".into(),
                    updated_at: at(2) + tiny,
                },
            ]
        );
    }
);

conformance!(
    monitor_file_writers_each_replace_another_text,
    |store: Arc<dyn Store>| async move {
        // Writers racing on one source: each reports a different text replaced, so a history
        // built from the answers has no fork.
        let writes = (0..8).map(|i| {
            let store = store.clone();
            async move {
                store
                    .put_monitor_file("race", &format!("text {i}"), "ci", at(i))
                    .await
                    .unwrap()
            }
        });
        let replaced = futures::future::join_all(writes).await;
        assert_eq!(
            replaced.iter().filter(|r| r.is_none()).count(),
            1,
            "{replaced:?}"
        );
        let mut texts: Vec<String> = replaced.into_iter().flatten().collect();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), 7, "{texts:?}");
        let last = store.list_monitor_files().await.unwrap();
        assert_eq!(last.len(), 1);
        assert!(
            !texts.contains(&last[0].text),
            "the text stored was never replaced"
        );
    }
);

conformance!(heartbeat_keys_set_rotate_and_stay_unique, |store: Arc<
    dyn Store,
>| async move {
    assert!(store.heartbeat_monitors().await.unwrap().is_empty());
    assert_eq!(store.heartbeat_by_digest("d1").await.unwrap(), None);
    store
        .put_heartbeat_key("nightly", "d1", at(0))
        .await
        .unwrap();
    store
        .put_heartbeat_key("backup", "d2", at(0))
        .await
        .unwrap();
    assert_eq!(
        store.heartbeat_by_digest("d1").await.unwrap().as_deref(),
        Some("nightly")
    );
    assert_eq!(
        store.heartbeat_by_digest("d2").await.unwrap().as_deref(),
        Some("backup")
    );

    // Rotating: the old digest no longer finds the monitor, the new one does.
    store
        .put_heartbeat_key("nightly", "d3", at(1))
        .await
        .unwrap();
    assert_eq!(store.heartbeat_by_digest("d1").await.unwrap(), None);
    assert_eq!(
        store.heartbeat_by_digest("d3").await.unwrap().as_deref(),
        Some("nightly")
    );
    // Setting the key a monitor already has changes nothing.
    store
        .put_heartbeat_key("nightly", "d3", at(2))
        .await
        .unwrap();
    assert_eq!(
        store.heartbeat_by_digest("d3").await.unwrap().as_deref(),
        Some("nightly")
    );

    // A digest that is another monitor's key is refused, for a monitor with a key or a new
    // one, and nothing is written.
    let err = store
        .put_heartbeat_key("backup", "d3", at(3))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("backup"), "{err}");
    let err = store
        .put_heartbeat_key("fresh", "d2", at(3))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        store.heartbeat_by_digest("d2").await.unwrap().as_deref(),
        Some("backup")
    );
    assert_eq!(
        store.heartbeat_by_digest("d3").await.unwrap().as_deref(),
        Some("nightly")
    );
    // A digest rotated away is free again.
    store.put_heartbeat_key("fresh", "d1", at(4)).await.unwrap();
    assert_eq!(
        store.heartbeat_by_digest("d1").await.unwrap().as_deref(),
        Some("fresh")
    );

    assert_eq!(
        store.heartbeat_monitors().await.unwrap(),
        names(&["backup", "fresh", "nightly"])
    );
});

conformance!(
    pings_newest_first_per_monitor,
    |store: Arc<dyn Store>| async move {
        assert!(store.recent_pings("nightly", 10).await.unwrap().is_empty());
        let tiny = chrono::Duration::microseconds(9);
        let pings = [
            ping("nightly", at(0) + tiny, "start", None, ""),
            ping("backup", at(0), "success", Some(0), "backed up"),
            ping("nightly", at(1), "fail", Some(-1), "exit 255\nline two ✓"),
            // Received out of order: the order stored decides, not `at`.
            ping("nightly", at(-5), "success", Some(0), "late"),
            ping("backup", at(2), "fail", Some(137), ""),
        ];
        let mut seqs = Vec::new();
        for p in &pings {
            seqs.push(store.insert_ping(p).await.unwrap());
        }
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

        let nightly = store.recent_pings("nightly", 10).await.unwrap();
        assert_eq!(
            nightly.iter().map(inserted_ping).collect::<Vec<_>>(),
            vec![pings[3].clone(), pings[2].clone(), pings[0].clone()]
        );
        assert_eq!(
            nightly.iter().map(|p| p.seq).collect::<Vec<_>>(),
            vec![seqs[3], seqs[2], seqs[0]]
        );
        let newest_two = store.recent_pings("nightly", 2).await.unwrap();
        assert_eq!(newest_two, nightly[..2].to_vec());
        let backup = store.recent_pings("backup", 10).await.unwrap();
        assert_eq!(
            backup.iter().map(inserted_ping).collect::<Vec<_>>(),
            vec![pings[4].clone(), pings[1].clone()]
        );
        assert!(store.recent_pings("other", 10).await.unwrap().is_empty());
    }
);

conformance!(
    monitor_rounds_upsert_states_and_append_transitions,
    |store: Arc<dyn Store>| async move {
        assert!(store.monitor_states(None).await.unwrap().is_empty());
        assert!(store
            .monitor_transitions(None, 10)
            .await
            .unwrap()
            .is_empty());
        // An empty round writes nothing.
        store.save_monitor_round(&[], &[]).await.unwrap();

        let tiny = chrono::Duration::microseconds(1);
        let round1_states = vec![
            state("web", "host=b", r#"{"state":"ok"}"#, at(0)),
            state("web", "host=a", r#"{"state":"pending","count":1}"#, at(0)),
            state("db", "", r#"{"state":"ok"}"#, at(0) + tiny),
        ];
        let round1 = vec![
            transition("web", "host=a", "ok", "pending", false, Some(0.25), at(0)),
            transition("db", "", "unknown", "ok", true, None, at(0) + tiny),
        ];
        store
            .save_monitor_round(&round1_states, &round1)
            .await
            .unwrap();
        let round2_states = vec![state(
            "web",
            "host=a",
            r#"{"state":"critical","count":3}"#,
            at(1),
        )];
        let round2 = vec![
            transition(
                "web",
                "host=a",
                "pending",
                "critical",
                true,
                Some(-1e300),
                at(1),
            ),
            transition(
                "web",
                "host=a",
                "critical",
                "critical",
                true,
                Some(f64::INFINITY),
                at(1),
            ),
            // No value is kept for a NaN, on either backend.
            transition("db", "", "ok", "unknown", false, Some(f64::NAN), at(1)),
        ];
        store
            .save_monitor_round(&round2_states, &round2)
            .await
            .unwrap();

        // States are upserted by monitor and series, listed by monitor then series.
        let all = store.monitor_states(None).await.unwrap();
        assert_eq!(
            all,
            vec![
                round1_states[2].clone(),
                round2_states[0].clone(),
                round1_states[0].clone(),
            ]
        );
        assert_eq!(
            store.monitor_states(Some("web")).await.unwrap(),
            all[1..].to_vec()
        );
        assert!(store
            .monitor_states(Some("other"))
            .await
            .unwrap()
            .is_empty());

        // Transitions newest first, by the order appended.
        let mut expected: Vec<NewTransition> = [round1, round2].concat();
        expected[4].value = None;
        expected.reverse();
        let transitions = store.monitor_transitions(None, 10).await.unwrap();
        assert_eq!(
            transitions
                .iter()
                .map(appended_transition)
                .collect::<Vec<_>>(),
            expected
        );
        assert!(transitions.windows(2).all(|w| w[0].seq > w[1].seq));
        assert_eq!(
            store.monitor_transitions(None, 2).await.unwrap(),
            transitions[..2].to_vec()
        );
        let web = store.monitor_transitions(Some("web"), 10).await.unwrap();
        assert_eq!(
            web,
            transitions
                .iter()
                .filter(|t| t.monitor == "web")
                .cloned()
                .collect::<Vec<_>>()
        );
        assert_eq!(web.len(), 3);
        assert_eq!(
            store.monitor_transitions(Some("web"), 1).await.unwrap(),
            web[..1].to_vec()
        );
        assert!(store
            .monitor_transitions(Some("other"), 10)
            .await
            .unwrap()
            .is_empty());
    }
);

conformance!(
    monitor_states_deleted_by_series,
    |store: Arc<dyn Store>| async move {
        let states = vec![
            state("web", "a", "{}", at(0)),
            state("web", "b", "{}", at(0)),
            state("web", "c", "{}", at(0)),
            state("api", "a", "{}", at(0)),
        ];
        store.save_monitor_round(&states, &[]).await.unwrap();
        store.delete_monitor_states("web", &[]).await.unwrap();
        assert_eq!(store.monitor_states(None).await.unwrap().len(), 4);
        // Only that monitor's series go, and series it never had are no error.
        store
            .delete_monitor_states("web", &names(&["a", "c", "gone"]))
            .await
            .unwrap();
        assert_eq!(
            store.monitor_states(None).await.unwrap(),
            vec![states[3].clone(), states[1].clone()]
        );
    }
);

conformance!(forget_monitors_removes_only_theirs, |store: Arc<
    dyn Store,
>| async move {
    for (i, monitor) in ["gone", "kept"].into_iter().enumerate() {
        store
            .put_monitor_file(monitor, "[x]\n", "ci", at(0))
            .await
            .unwrap();
        store
            .put_heartbeat_key(monitor, &format!("digest-{monitor}"), at(0))
            .await
            .unwrap();
        store
            .insert_ping(&ping(monitor, at(i as i64), "success", Some(0), ""))
            .await
            .unwrap();
        store
            .save_monitor_round(
                &[state(monitor, "s", "{}", at(1))],
                &[transition(monitor, "s", "unknown", "ok", true, None, at(1))],
            )
            .await
            .unwrap();
    }
    let kept_pings = store.recent_pings("kept", 10).await.unwrap();
    let kept_transitions = store.monitor_transitions(Some("kept"), 10).await.unwrap();

    store.forget_monitors(&[]).await.unwrap();
    assert_eq!(
        store.heartbeat_monitors().await.unwrap(),
        names(&["gone", "kept"])
    );
    // More names than one statement binds, the one that exists among them.
    let mut forgotten: Vec<String> = (0..1200).map(|i| format!("never-{i}")).collect();
    forgotten.insert(700, "gone".into());
    store.forget_monitors(&forgotten).await.unwrap();

    assert_eq!(
        store.heartbeat_by_digest("digest-gone").await.unwrap(),
        None
    );
    assert!(store.recent_pings("gone", 10).await.unwrap().is_empty());
    assert!(store.monitor_states(Some("gone")).await.unwrap().is_empty());
    assert!(store
        .monitor_transitions(Some("gone"), 10)
        .await
        .unwrap()
        .is_empty());

    assert_eq!(store.heartbeat_monitors().await.unwrap(), names(&["kept"]));
    assert_eq!(
        store
            .heartbeat_by_digest("digest-kept")
            .await
            .unwrap()
            .as_deref(),
        Some("kept")
    );
    assert_eq!(store.recent_pings("kept", 10).await.unwrap(), kept_pings);
    assert_eq!(
        store.monitor_states(None).await.unwrap(),
        vec![state("kept", "s", "{}", at(1))]
    );
    assert_eq!(
        store.monitor_transitions(None, 10).await.unwrap(),
        kept_transitions
    );
    // Files are the caller's to keep or delete.
    assert_eq!(store.list_monitor_files().await.unwrap().len(), 2);
});

/// A round that fails part-way writes nothing: its states stay as they were and none of
/// its transitions are kept, on both backends.
#[tokio::test]
async fn failed_monitor_round_writes_nothing() {
    let before = vec![state("web", "a", r#"{"state":"ok"}"#, at(0))];
    let first = vec![transition("web", "a", "unknown", "ok", true, None, at(0))];
    let round_states = vec![
        state("web", "a", r#"{"state":"critical"}"#, at(1)),
        state("web", "b", r#"{"state":"ok"}"#, at(1)),
    ];
    let round = vec![transition(
        "web",
        "a",
        "ok",
        "critical",
        true,
        Some(9.5),
        at(1),
    )];
    macro_rules! check {
        ($backend:literal, $store:expr, $raw:expr) => {{
            let (store, raw) = (&$store, &$raw);
            store.save_monitor_round(&before, &first).await.unwrap();
            // The transitions' table goes away, so the round fails at its first transition,
            // after its states were written in the transaction.
            sqlx::query("ALTER TABLE monitor_transitions RENAME TO monitor_transitions_away")
                .execute(raw)
                .await
                .unwrap();
            let err = store.save_monitor_round(&round_states, &round).await;
            assert!(
                matches!(err, Err(StoreError::Database(_))),
                "{}: {err:?}",
                $backend
            );
            sqlx::query("ALTER TABLE monitor_transitions_away RENAME TO monitor_transitions")
                .execute(raw)
                .await
                .unwrap();
            assert_eq!(
                store.monitor_states(None).await.unwrap(),
                before,
                "{}",
                $backend
            );
            assert_eq!(
                store
                    .monitor_transitions(None, 10)
                    .await
                    .unwrap()
                    .iter()
                    .map(appended_transition)
                    .collect::<Vec<_>>(),
                first,
                "{}",
                $backend
            );
            // The same round, retried, is written whole.
            store
                .save_monitor_round(&round_states, &round)
                .await
                .unwrap();
            assert_eq!(
                store.monitor_states(None).await.unwrap(),
                round_states,
                "{}",
                $backend
            );
            assert_eq!(store.monitor_transitions(None, 10).await.unwrap().len(), 2);
        }};
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gantry.db");
    let sqlite = gantry_store::SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap();
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    check!("sqlite", sqlite, raw);
    raw.close().await;
    sqlite.close().await;

    let url = gantry_store::testing::fresh_postgres_url("failed_monitor_round").await;
    let pg = gantry_store::PostgresStore::open(&url, StoreOptions::default())
        .await
        .unwrap();
    let raw = sqlx::PgPool::connect(&url).await.unwrap();
    check!("postgres", pg, raw);
    raw.close().await;
    pg.close().await;
}

// ---- detection ----

fn verdict(
    service: &str,
    environment: &str,
    metric: &str,
    change_id: Option<Ulid>,
    rollout_id: Option<Ulid>,
    at: DateTime<Utc>,
    regression: bool,
) -> VerdictRecord {
    VerdictRecord {
        id: Ulid::new(),
        service: service.into(),
        environment: environment.into(),
        metric: metric.into(),
        change_id,
        rollout_id,
        at,
        regression,
        doc: serde_json::json!({ "metric": metric, "regression": regression, "note": "ünïcode ✓" })
            .to_string(),
    }
}

fn ids(verdicts: &[VerdictRecord]) -> Vec<Ulid> {
    verdicts.iter().map(|v| v.id).collect()
}

conformance!(detect_configs_put_replace_remove_and_list, |store: Arc<
    dyn Store,
>| async move {
    assert!(store.list_detect_configs().await.unwrap().is_empty());
    let tiny = chrono::Duration::microseconds(7);
    assert_eq!(
        store
            .put_detect_config("web", Some("metric = \"5xx\"\n"), "ann", at(0) + tiny)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .put_detect_config("batch", Some("metric = \"runtime\"\n"), "bob", at(1))
            .await
            .unwrap(),
        None
    );
    // Replacing returns the text replaced, and the new author and time are kept.
    assert_eq!(
        store
            .put_detect_config(
                "web",
                Some("metric = \"p99\" # ünïcode\n"),
                "cat",
                at(2) + tiny
            )
            .await
            .unwrap()
            .as_deref(),
        Some("metric = \"5xx\"\n")
    );
    assert_eq!(
        store.list_detect_configs().await.unwrap(),
        vec![
            DetectConfigRecord {
                service: "batch".into(),
                text: "metric = \"runtime\"\n".into(),
                updated_by: "bob".into(),
                updated_at: at(1),
            },
            DetectConfigRecord {
                service: "web".into(),
                text: "metric = \"p99\" # ünïcode\n".into(),
                updated_by: "cat".into(),
                updated_at: at(2) + tiny,
            },
        ]
    );
    // Removing returns the text removed; removing what is not there is no error.
    assert_eq!(
        store
            .put_detect_config("web", None, "dan", at(3))
            .await
            .unwrap()
            .as_deref(),
        Some("metric = \"p99\" # ünïcode\n")
    );
    assert_eq!(
        store
            .put_detect_config("web", None, "dan", at(3))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .put_detect_config("never", None, "dan", at(3))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .list_detect_configs()
            .await
            .unwrap()
            .iter()
            .map(|c| c.service.as_str())
            .collect::<Vec<_>>(),
        vec!["batch"]
    );
    // A removed service's table can be stored again, as new.
    assert_eq!(
        store
            .put_detect_config("web", Some("x = 1\n"), "eve", at(4))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.list_detect_configs().await.unwrap().len(), 2);
});

conformance!(verdict_round_trip, |store: Arc<dyn Store>| async move {
    let tiny = chrono::Duration::microseconds(11);
    let full = verdict(
        "web",
        "prod",
        "stats.timers.web.p99",
        Some(Ulid::new()),
        Some(Ulid::new()),
        at(0) + tiny,
        true,
    );
    let bare = verdict("batch", "staging", "runtime", None, None, at(1), false);
    assert_eq!(store.get_verdict(full.id).await.unwrap(), None);
    store.insert_verdict(&full).await.unwrap();
    store.insert_verdict(&bare).await.unwrap();
    assert_eq!(
        store.get_verdict(full.id).await.unwrap(),
        Some(full.clone())
    );
    assert_eq!(
        store.get_verdict(bare.id).await.unwrap(),
        Some(bare.clone())
    );
    assert_eq!(store.get_verdict(Ulid::new()).await.unwrap(), None);

    // An id already stored is a conflict, and the stored verdict stays as it was.
    let mut again = bare.clone();
    again.doc = "{}".into();
    let err = store.insert_verdict(&again).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(err.to_string().contains(&bare.id.to_string()), "{err}");
    assert_eq!(
        store.get_verdict(bare.id).await.unwrap(),
        Some(bare.clone())
    );
    assert_eq!(
        store
            .list_verdicts(None, None, false, None, 10)
            .await
            .unwrap(),
        vec![bare, full]
    );
});

conformance!(verdicts_listed_newest_first_with_filters, |store: Arc<
    dyn Store,
>| async move {
    assert!(store
        .list_verdicts(None, None, false, None, 10)
        .await
        .unwrap()
        .is_empty());
    let vs = [
        verdict("web", "prod", "5xx", None, None, at(0), false),
        verdict("web", "prod", "p99", None, None, at(2), true),
        verdict("web", "staging", "5xx", None, None, at(1), true),
        verdict("batch", "prod", "runtime", None, None, at(3), false),
        // Stored late: `at` orders, not the order stored.
        verdict("web", "prod", "errors", None, None, at(-1), true),
        // The same `at` as vs[1]: ordered by id, newest first.
        verdict("web", "prod", "cpu", None, None, at(2), false),
    ];
    for v in &vs {
        store.insert_verdict(v).await.unwrap();
    }
    let (tie_high, tie_low) = if vs[5].id > vs[1].id {
        (vs[5].id, vs[1].id)
    } else {
        (vs[1].id, vs[5].id)
    };

    let all = store
        .list_verdicts(None, None, false, None, 10)
        .await
        .unwrap();
    assert_eq!(
        ids(&all),
        vec![vs[3].id, tie_high, tie_low, vs[2].id, vs[0].id, vs[4].id]
    );
    assert_eq!(
        ids(&store
            .list_verdicts(None, None, false, None, 2)
            .await
            .unwrap()),
        vec![vs[3].id, tie_high]
    );
    assert_eq!(
        ids(&store
            .list_verdicts(Some("web"), None, false, None, 10)
            .await
            .unwrap()),
        vec![tie_high, tie_low, vs[2].id, vs[0].id, vs[4].id]
    );
    assert_eq!(
        ids(&store
            .list_verdicts(Some("web"), Some("prod"), false, None, 10)
            .await
            .unwrap()),
        vec![tie_high, tie_low, vs[0].id, vs[4].id]
    );
    assert_eq!(
        ids(&store
            .list_verdicts(None, Some("prod"), false, None, 10)
            .await
            .unwrap()),
        vec![vs[3].id, tie_high, tie_low, vs[0].id, vs[4].id]
    );
    assert_eq!(
        ids(&store
            .list_verdicts(Some("web"), None, true, None, 10)
            .await
            .unwrap()),
        vec![vs[1].id, vs[2].id, vs[4].id]
    );
    // `since` is inclusive.
    assert_eq!(
        ids(&store
            .list_verdicts(Some("web"), Some("prod"), true, Some(at(2)), 10)
            .await
            .unwrap()),
        vec![vs[1].id]
    );
    assert_eq!(
        ids(&store
            .list_verdicts(None, None, false, Some(at(1)), 3)
            .await
            .unwrap()),
        vec![vs[3].id, tie_high, tie_low]
    );
    assert!(store
        .list_verdicts(Some("web"), Some("dev"), false, None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_verdicts(Some("batch"), None, true, None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_verdicts(None, None, false, Some(at(4)), 10)
        .await
        .unwrap()
        .is_empty());
});

conformance!(
    one_regression_per_change_and_per_rollout_metric,
    |store: Arc<dyn Store>| async move {
        let (change, rollout) = (Ulid::new(), Ulid::new());
        let first = verdict("web", "prod", "p99", Some(change), None, at(0), true);
        store.insert_verdict(&first).await.unwrap();

        // A second regression of the change for the metric: refused, nothing written, even
        // from another rollout.
        let second = verdict(
            "web",
            "prod",
            "p99",
            Some(change),
            Some(rollout),
            at(1),
            true,
        );
        let err = store.insert_verdict(&second).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let message = err.to_string();
        assert!(message.contains(&change.to_string()), "{message}");
        assert!(message.contains("p99"), "{message}");
        assert!(message.contains(&first.id.to_string()), "{message}");
        assert_eq!(store.get_verdict(second.id).await.unwrap(), None);

        // Verdicts that are not regressions are not limited; nor are other metrics.
        let mut kept = vec![first.clone()];
        for i in 0..3 {
            let v = verdict(
                "web",
                "prod",
                "p99",
                Some(change),
                Some(rollout),
                at(2 + i),
                false,
            );
            store.insert_verdict(&v).await.unwrap();
            kept.push(v);
        }
        let other_metric = verdict("web", "prod", "5xx", Some(change), None, at(5), true);
        store.insert_verdict(&other_metric).await.unwrap();
        kept.push(other_metric);

        // A rollout too: one regression per metric, whatever change it carries.
        let of_rollout = verdict("web", "prod", "p99", None, Some(rollout), at(6), true);
        store.insert_verdict(&of_rollout).await.unwrap();
        kept.push(of_rollout.clone());
        let again = verdict(
            "web",
            "prod",
            "p99",
            Some(Ulid::new()),
            Some(rollout),
            at(7),
            true,
        );
        let err = store.insert_verdict(&again).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let message = err.to_string();
        assert!(message.contains("rollout"), "{message}");
        assert!(message.contains(&rollout.to_string()), "{message}");
        assert!(message.contains(&of_rollout.id.to_string()), "{message}");
        assert_eq!(store.get_verdict(again.id).await.unwrap(), None);

        // The same metric of another change or rollout, or of neither, is its own.
        for v in [
            verdict(
                "web",
                "prod",
                "p99",
                Some(Ulid::new()),
                Some(Ulid::new()),
                at(8),
                true,
            ),
            verdict("web", "prod", "p99", None, None, at(9), true),
            verdict("web", "prod", "p99", None, None, at(10), true),
        ] {
            store.insert_verdict(&v).await.unwrap();
            kept.push(v);
        }

        let mut stored = store
            .list_verdicts(None, None, false, None, 100)
            .await
            .unwrap();
        stored.sort_by_key(|v| v.id);
        kept.sort_by_key(|v| v.id);
        assert_eq!(stored, kept);
    }
);

conformance!(
    racing_regressions_of_a_change_have_one_winner,
    |store: Arc<dyn Store>| async move {
        let change = Ulid::new();
        let writes = (0..8).map(|i| {
            let store = store.clone();
            async move {
                store
                    .insert_verdict(&verdict(
                        "web",
                        "prod",
                        "p99",
                        Some(change),
                        None,
                        at(i),
                        true,
                    ))
                    .await
            }
        });
        let results = futures::future::join_all(writes).await;
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Ok(()) | Err(StoreError::Conflict(_)))),
            "{results:?}"
        );
        assert_eq!(
            store
                .regressions_of(None, Some(change))
                .await
                .unwrap()
                .len(),
            1
        );
    }
);

conformance!(regressions_of_a_rollout_or_a_change, |store: Arc<
    dyn Store,
>| async move {
    let (change, rollout, other) = (Ulid::new(), Ulid::new(), Ulid::new());
    let vs = [
        verdict(
            "web",
            "prod",
            "p99",
            Some(change),
            Some(rollout),
            at(1),
            true,
        ),
        verdict("web", "prod", "5xx", Some(change), None, at(3), true),
        verdict("web", "prod", "cpu", None, Some(rollout), at(2), true),
        // Not regressions: never listed.
        verdict(
            "web",
            "prod",
            "mem",
            Some(change),
            Some(rollout),
            at(4),
            false,
        ),
        // Another change's rollout.
        verdict(
            "web",
            "prod",
            "p99",
            Some(other),
            Some(Ulid::new()),
            at(5),
            true,
        ),
    ];
    for v in &vs {
        store.insert_verdict(v).await.unwrap();
    }
    assert_eq!(
        store.regressions_of(Some(rollout), None).await.unwrap(),
        vec![vs[2].clone(), vs[0].clone()]
    );
    assert_eq!(
        store.regressions_of(None, Some(change)).await.unwrap(),
        vec![vs[1].clone(), vs[0].clone()]
    );
    assert_eq!(
        ids(&store
            .regressions_of(Some(rollout), Some(change))
            .await
            .unwrap()),
        vec![vs[1].id, vs[2].id, vs[0].id]
    );
    assert_eq!(
        ids(&store.regressions_of(None, Some(other)).await.unwrap()),
        vec![vs[4].id]
    );
    assert!(store.regressions_of(None, None).await.unwrap().is_empty());
    assert!(store
        .regressions_of(Some(Ulid::new()), Some(Ulid::new()))
        .await
        .unwrap()
        .is_empty());
});

#[tokio::test]
async fn sqlite_reopen_keeps_data_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gantry.db");
    let c = change("shop", "prod", ChangeKind::Deploy, at(0));
    {
        let store = gantry_store::SqliteStore::open(&path, StoreOptions::default())
            .await
            .unwrap();
        assert_eq!(
            store.schema_status().applied,
            (1..=gantry_store::SCHEMA_VERSION).collect::<Vec<_>>()
        );
        store.insert_change(&c).await.unwrap();
        store.close().await;
    }
    let store = gantry_store::SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.schema_status().applied, Vec::<i64>::new());
    assert_eq!(store.schema_status().current, gantry_store::SCHEMA_VERSION);
    assert!(store.get_change(c.id).await.unwrap().is_some());
    store.close().await;
}

/// A schema written by a newer gantry that this one cannot run against is refused with a
/// message saying what to do; one that stays compatible is used as it is.
#[tokio::test]
async fn newer_schema_refused_or_tolerated() {
    let newer = gantry_store::SCHEMA_VERSION + 1;
    for (version, min, refused) in [(99, 99, true), (newer, 1, false)] {
        let url = gantry_store::testing::fresh_postgres_url("newer_schema").await;
        let store = gantry_store::PostgresStore::open(&url, StoreOptions::default())
            .await
            .unwrap();
        store.close().await;
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query("UPDATE gantry_schema SET version = $1, min_binary_version = $2")
            .bind(version)
            .bind(min)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let opened = gantry_store::PostgresStore::open(&url, StoreOptions::default()).await;
        match opened {
            Err(e) if refused => {
                let msg = e.to_string();
                assert!(
                    msg.contains("schema is version 99") && msg.contains("Upgrade gantry"),
                    "{msg}"
                );
            }
            Ok(store) if !refused => {
                assert_eq!(store.schema_status().current, version);
                store.close().await;
            }
            Err(e) => panic!("version {version}: unexpected error {e}"),
            Ok(_) => panic!("version {version}: should have been refused"),
        }
    }
}

/// The same refusal on SQLite: an older binary never writes to a schema it does not know.
#[tokio::test]
async fn sqlite_newer_schema_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gantry.db");
    let store = gantry_store::SqliteStore::open(&path, StoreOptions::default())
        .await
        .unwrap();
    store.close().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE gantry_schema SET version = 7, min_binary_version = 7")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let err = gantry_store::SqliteStore::open(&path, StoreOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::SchemaTooNew(_)), "{err}");
    assert!(err.to_string().contains("schema is version 7"), "{err}");
}

/// Servers starting together on one PostgreSQL database migrate once and agree.
#[tokio::test]
async fn postgres_parallel_start_migrates_once() {
    let url = gantry_store::testing::fresh_postgres_url("parallel_start").await;
    let opens = (0..4).map(|_| gantry_store::PostgresStore::open(&url, StoreOptions::default()));
    let stores = futures::future::join_all(opens).await;
    let applied: usize = stores
        .iter()
        .map(|s| s.as_ref().unwrap().schema_status().applied.len())
        .sum();
    assert_eq!(applied, gantry_store::SCHEMA_VERSION as usize);
    for s in stores {
        s.unwrap().close().await;
    }
}

/// A commit on one server wakes the stream of another server on the same database.
#[tokio::test]
async fn postgres_notify_crosses_servers() {
    let url = gantry_store::testing::fresh_postgres_url("notify").await;
    let a = gantry_store::PostgresStore::open(&url, StoreOptions::default())
        .await
        .unwrap();
    let b = gantry_store::PostgresStore::open(&url, StoreOptions::default())
        .await
        .unwrap();
    let mut woken = b.subscribe();
    woken.borrow_and_update();
    // Give b's listener a moment to LISTEN before a commits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = change("shop", "prod", ChangeKind::Deploy, at(0));
    let seq = a.insert_change(&c).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while *woken.borrow_and_update() < seq {
            woken.changed().await.unwrap();
        }
    })
    .await
    .expect("b hears of a's commit");
    let events = b.events_after(seq - 1, 10).await.unwrap();
    assert_eq!(events[0].change.id, c.id);
    a.close().await;
    b.close().await;
}

fn delivery(notification: &str, receiver: &str, created: DateTime<Utc>) -> NewDelivery {
    NewDelivery {
        id: Ulid::new(),
        notification_id: notification.into(),
        receiver: receiver.into(),
        service: "shop".into(),
        environment: "prod".into(),
        summary: format!("{notification} to {receiver}"),
        doc: "{}".into(),
        created_at: created,
    }
}

conformance!(
    deliveries_are_claimed_once_retried_and_finished,
    |store: Arc<dyn Store>| async move {
        assert_eq!(store.notify_state("alerts").await.unwrap(), None);
        let first = vec![
            delivery("shop/prod/1/1", "hook", at(0)),
            delivery("shop/prod/1/1", "oncall", at(0)),
        ];
        store
            .save_notify_round("alerts", "{\"groups\":1}", &first, at(0))
            .await
            .unwrap();
        // The same notification and receiver again: left as it is; the state is replaced.
        store
            .save_notify_round("alerts", "{\"groups\":2}", &first[..1], at(1))
            .await
            .unwrap();
        assert_eq!(
            store.notify_state("alerts").await.unwrap().as_deref(),
            Some("{\"groups\":2}")
        );
        assert_eq!(
            store
                .list_deliveries(None, None, None, 10)
                .await
                .unwrap()
                .len(),
            2
        );

        // One claimer gets each; a second finds nothing until the claim lapses.
        let a = store.claim_deliveries("a", at(1), at(4), 1).await.unwrap();
        assert_eq!(a.len(), 1);
        let b = store.claim_deliveries("b", at(1), at(4), 10).await.unwrap();
        assert_eq!(b.len(), 1);
        assert_ne!(a[0].id, b[0].id);
        assert!(store
            .claim_deliveries("c", at(2), at(5), 10)
            .await
            .unwrap()
            .is_empty());
        let lapsed = store.claim_deliveries("c", at(5), at(8), 10).await.unwrap();
        assert_eq!(lapsed.len(), 2, "claims lapse");
        // a's claim was taken over: its outcome is not recorded.
        assert!(!store
            .finish_delivery(a[0].id, "a", at(5), &DeliveryOutcome::Delivered)
            .await
            .unwrap());
        assert!(store
            .finish_delivery(a[0].id, "c", at(5), &DeliveryOutcome::Delivered)
            .await
            .unwrap());
        let retry = DeliveryOutcome::Retry {
            at: at(10),
            error: "the receiver answered 503".into(),
        };
        assert!(store
            .finish_delivery(b[0].id, "c", at(5), &retry)
            .await
            .unwrap());
        assert!(
            store
                .claim_deliveries("c", at(9), at(12), 10)
                .await
                .unwrap()
                .is_empty(),
            "not due yet"
        );
        let again = store
            .claim_deliveries("c", at(10), at(13), 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
        assert_eq!(again[0].first_attempt_at, Some(at(5)));
        assert!(store
            .finish_delivery(
                again[0].id,
                "c",
                at(10),
                &DeliveryOutcome::Failed {
                    error: "gave up".into()
                }
            )
            .await
            .unwrap());
        let all = store.list_deliveries(None, None, None, 10).await.unwrap();
        let by_id = |id| all.iter().find(|d| d.id == id).unwrap();
        let done = by_id(a[0].id);
        assert_eq!((done.state.as_str(), done.attempts), ("delivered", 1));
        assert_eq!(done.delivered_at, Some(at(5)));
        let failed = by_id(b[0].id);
        assert_eq!((failed.state.as_str(), failed.attempts), ("failed", 2));
        assert_eq!(failed.first_attempt_at, Some(at(5)));
        assert_eq!(failed.last_attempt_at, Some(at(10)));
        assert_eq!(failed.last_error.as_deref(), Some("gave up"));
        assert_eq!(
            store
                .list_deliveries(Some("shop"), Some("prod"), Some("failed"), 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(store
            .list_deliveries(Some("billing"), None, None, 10)
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .claim_deliveries("c", at(100), at(103), 10)
            .await
            .unwrap()
            .is_empty());
    }
);

conformance!(
    silences_are_listed_until_they_end_or_expire,
    |store: Arc<dyn Store>| async move {
        let silence = |kind: &str, ends: Option<DateTime<Utc>>| SilenceRecord {
            id: Ulid::new(),
            kind: kind.into(),
            doc: "{}".into(),
            created_by: "admin".into(),
            created_at: at(0),
            ends_at: ends,
            expired_at: None,
            expired_by: None,
        };
        let short = silence("silence", Some(at(10)));
        let long = silence("silence", Some(at(100)));
        let weekly = silence("maintenance", None);
        for s in [&short, &long, &weekly] {
            store.insert_silence(s).await.unwrap();
        }
        assert_eq!(store.list_silences(Some(at(5))).await.unwrap().len(), 3);
        assert_eq!(
            store.list_silences(Some(at(10))).await.unwrap().len(),
            2,
            "ended at its end"
        );
        let expired = store
            .expire_silence(long.id, "ops", at(20))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(expired.expired_at, Some(at(20)));
        assert_eq!(expired.expired_by.as_deref(), Some("ops"));
        let twice = store
            .expire_silence(long.id, "someone", at(30))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            twice.expired_by.as_deref(),
            Some("ops"),
            "expiring again changes nothing"
        );
        let now: Vec<Ulid> = store
            .list_silences(Some(at(21)))
            .await
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(now, [weekly.id]);
        assert_eq!(store.list_silences(None).await.unwrap().len(), 3);
        assert_eq!(
            store
                .expire_silence(Ulid::new(), "ops", at(21))
                .await
                .unwrap(),
            None
        );
    }
);

conformance!(log_watches_are_kept_apart_per_service, |store: Arc<
    dyn Store,
>| async move {
    assert_eq!(
        store
            .put_log_watches("shop", Some("[[logs]]\n"), "admin", at(0))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .put_log_watches("shop", Some("[[logs]] # 2\n"), "admin", at(1))
            .await
            .unwrap()
            .as_deref(),
        Some("[[logs]]\n")
    );
    let listed = store.list_log_watches().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].text, "[[logs]] # 2\n");
    assert!(
        store.list_detect_configs().await.unwrap().is_empty(),
        "apart from [detect]"
    );
    store
        .put_log_watches("shop", None, "admin", at(2))
        .await
        .unwrap();
    assert!(store.list_log_watches().await.unwrap().is_empty());
});

conformance!(
    monitor_history_is_pruned_keeping_each_heartbeats_newest,
    |store: Arc<dyn Store>| async move {
        for (monitor, count) in [("nightly", 5), ("hourly", 3)] {
            for i in 0..count {
                store
                    .insert_ping(&NewPing {
                        monitor: monitor.into(),
                        at: at(i),
                        kind: "success".into(),
                        exit_code: None,
                        body: String::new(),
                    })
                    .await
                    .unwrap();
            }
        }
        let t = |m: i64| NewTransition {
            monitor: "nightly".into(),
            series: String::new(),
            from: "OK".into(),
            to: "CRITICAL".into(),
            hard: true,
            value: None,
            at: at(m),
        };
        store.save_monitor_round(&[], &[t(1), t(50)]).await.unwrap();
        // Pings before minute 100 go, but each monitor keeps its newest two.
        let gone = store
            .prune_monitor_history(at(100), 2, at(10))
            .await
            .unwrap();
        assert_eq!(gone, 3 + 1 + 1);
        let kept: Vec<DateTime<Utc>> = store
            .recent_pings("nightly", 10)
            .await
            .unwrap()
            .iter()
            .map(|p| p.at)
            .collect();
        assert_eq!(kept, [at(4), at(3)]);
        assert_eq!(store.recent_pings("hourly", 10).await.unwrap().len(), 2);
        let transitions = store.monitor_transitions(None, 10).await.unwrap();
        assert_eq!(transitions.len(), 1);
        assert_eq!(transitions[0].at, at(50));

        let d = delivery("shop/prod/1/1", "hook", at(0));
        let p = delivery("shop/prod/1/1", "oncall", at(0));
        store
            .save_notify_round("alerts", "{}", &[d.clone(), p.clone()], at(0))
            .await
            .unwrap();
        let claimed = store.claim_deliveries("a", at(1), at(4), 1).await.unwrap();
        store
            .finish_delivery(claimed[0].id, "a", at(1), &DeliveryOutcome::Delivered)
            .await
            .unwrap();
        assert_eq!(
            store.prune_deliveries(at(2)).await.unwrap(),
            1,
            "pending ones stay"
        );
        assert_eq!(
            store
                .list_deliveries(None, None, None, 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }
);
