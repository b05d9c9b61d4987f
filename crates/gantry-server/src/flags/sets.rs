//! Flag sets in memory: one per service and environment, built from one consistent
//! snapshot of the store, holding the compiled engine every evaluation reads and the
//! client document's bytes every SDK fetch sends. No evaluation reads the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use gantry_flags::model::{ClientFeature, ClientFeatures, Constraint, EnvironmentDefinition};
use gantry_flags::Engine;
use gantry_store::{FlagSnapshot, Store, StoreError};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::tokens::SdkTokens;
use super::POLL_INTERVAL;

/// One service's flags as SDKs of one environment see them.
pub struct FlagSet {
    pub service: String,
    pub environment: String,
    /// The service's revision this set was built from.
    pub revision: i64,
    /// The database's identity, so an ETag of another database never matches.
    pub database_id: String,
    pub engine: Engine,
    /// The document with segments referenced by id (clients that support segments).
    pub document: ClientFeatures,
    /// Its bytes, with segments by id and with their constraints inlined.
    pub body_segments: Bytes,
    pub body_inlined: Bytes,
}

impl FlagSet {
    fn build(
        service: &str,
        environment: &str,
        snapshot: &FlagSnapshot,
        database_id: &str,
    ) -> FlagSet {
        let mut segments = Vec::with_capacity(snapshot.segments.len());
        for s in &snapshot.segments {
            match serde_json::from_str::<Vec<Constraint>>(&s.constraints) {
                Ok(constraints) => segments.push(gantry_flags::model::Segment {
                    id: s.id,
                    name: Some(s.name.clone()),
                    description: None,
                    constraints,
                }),
                Err(e) => tracing::error!(service, segment = %s.name, error = %e,
                    "a stored segment cannot be read; strategies using it evaluate to false"),
            }
        }
        let mut features = Vec::new();
        for flag in snapshot.flags.iter().filter(|f| f.archived_at.is_none()) {
            let definition = match flag.environments.get(environment) {
                None => EnvironmentDefinition::default(),
                Some(env) => serde_json::from_str(&env.definition).unwrap_or_else(|e| {
                    tracing::error!(service, flag = %flag.name, environment, error = %e,
                        "a stored flag definition cannot be read; serving the flag as disabled");
                    EnvironmentDefinition::default()
                }),
            };
            let mut feature = definition.to_client_feature(&flag.name);
            feature.r#type = Some(flag.flag_type.clone());
            feature.description = flag.description.clone();
            feature.project = Some(service.to_string());
            feature.stale = Some(false);
            feature.impression_data = Some(false);
            features.push(feature);
        }
        features.sort_by(|a, b| a.name.cmp(&b.name));
        let document = ClientFeatures {
            version: 2,
            features,
            segments,
            query: Some(serde_json::json!({
                "environment": environment,
                "project": [service],
                "inlineSegmentConstraints": false,
            })),
        };
        let inlined = inline_segments(&document, environment, service);
        FlagSet {
            service: service.to_string(),
            environment: environment.to_string(),
            revision: snapshot.revision,
            database_id: database_id.to_string(),
            engine: Engine::new(document.clone()),
            body_segments: Bytes::from(serde_json::to_vec(&document).unwrap_or_default()),
            body_inlined: Bytes::from(serde_json::to_vec(&inlined).unwrap_or_default()),
            document,
        }
    }

    /// An ETag naming a representation of this set: the database, the revision, and a
    /// hash of whatever else shaped the body (`shape`).
    pub fn etag(&self, shape: &[u8]) -> String {
        let digest = Sha256::digest(shape);
        let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("\"{}:{}:{short}\"", self.database_id, self.revision)
    }
}

/// The document for clients that do not know segments: each strategy carries its
/// segments' constraints, and there is no `segments` list.
pub fn inline_segments(
    document: &ClientFeatures,
    environment: &str,
    service: &str,
) -> ClientFeatures {
    let by_id: HashMap<i64, &Vec<Constraint>> = document
        .segments
        .iter()
        .map(|s| (s.id, &s.constraints))
        .collect();
    let mut out = document.clone();
    for feature in &mut out.features {
        inline_feature(feature, &by_id);
    }
    out.segments.clear();
    out.query = Some(serde_json::json!({
        "environment": environment,
        "project": [service],
        "inlineSegmentConstraints": true,
    }));
    out
}

fn inline_feature(feature: &mut ClientFeature, by_id: &HashMap<i64, &Vec<Constraint>>) {
    for strategy in &mut feature.strategies {
        for id in std::mem::take(&mut strategy.segments) {
            match by_id.get(&id) {
                Some(constraints) => strategy.constraints.extend(constraints.iter().cloned()),
                // A missing segment makes the strategy false; say so with a constraint
                // nothing can satisfy rather than silently widening it.
                None => strategy.constraints.push(Constraint {
                    context_name: "__gantry_missing_segment".into(),
                    operator: gantry_flags::model::Operator::parse("IN"),
                    values: Vec::new(),
                    value: None,
                    inverted: false,
                    case_insensitive: false,
                }),
            }
        }
    }
}

/// Every flag set this server holds, and what it knows of the store's revisions.
pub struct FlagSets {
    store: Arc<dyn Store>,
    database_id: RwLock<String>,
    /// A lower bound of each service's revision in the store: a set built from an older
    /// one is rebuilt before it is used.
    known: RwLock<HashMap<String, i64>>,
    /// By service, then environment (looked up without allocating).
    sets: RwLock<HashMap<String, HashMap<String, Arc<FlagSet>>>>,
    /// One rebuild at a time, so a burst of requests after a change builds once.
    rebuilding: tokio::sync::Mutex<()>,
    /// Bumped whenever some service's revision moved: streams wait on it.
    changed: watch::Sender<u64>,
    token_revision: AtomicI64,
    /// Logged once per outage, not per request.
    store_failing: AtomicBool,
    pub tokens: SdkTokens,
}

impl FlagSets {
    pub fn new(store: Arc<dyn Store>) -> FlagSets {
        FlagSets {
            tokens: SdkTokens::new(store.clone()),
            store,
            database_id: RwLock::new(String::new()),
            known: RwLock::new(HashMap::new()),
            sets: RwLock::new(HashMap::new()),
            rebuilding: tokio::sync::Mutex::new(()),
            changed: watch::channel(0).0,
            token_revision: AtomicI64::new(-1),
            store_failing: AtomicBool::new(false),
        }
    }

    fn known(&self, service: &str) -> i64 {
        self.known
            .read()
            .map(|k| k.get(service).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn cached(&self, service: &str, environment: &str) -> Option<Arc<FlagSet>> {
        let sets = self.sets.read().ok()?;
        sets.get(service)?.get(environment).cloned()
    }

    /// The set of `service` in `environment`, rebuilt first when the store has a newer
    /// revision. While the database is away, the last set built keeps serving.
    pub async fn get(&self, service: &str, environment: &str) -> Result<Arc<FlagSet>, StoreError> {
        let known = self.known(service);
        if let Some(set) = self.cached(service, environment) {
            if set.revision >= known {
                return Ok(set);
            }
        }
        let _one = self.rebuilding.lock().await;
        let known = self.known(service);
        let cached = self.cached(service, environment);
        if let Some(set) = &cached {
            if set.revision >= known {
                return Ok(set.clone());
            }
        }
        let built = async {
            if self
                .database_id
                .read()
                .map(|d| d.is_empty())
                .unwrap_or(true)
            {
                let state = self.store.flag_state().await?;
                if let Ok(mut id) = self.database_id.write() {
                    *id = state.database_id;
                }
            }
            let snapshot = self.store.flag_snapshot(service).await?;
            let database_id = self
                .database_id
                .read()
                .map(|d| d.clone())
                .unwrap_or_default();
            Ok::<_, StoreError>(FlagSet::build(
                service,
                environment,
                &snapshot,
                &database_id,
            ))
        }
        .await;
        match built {
            Ok(set) => {
                self.store_failing.store(false, Ordering::Relaxed);
                let set = Arc::new(set);
                if let Ok(mut known) = self.known.write() {
                    let k = known.entry(service.to_string()).or_insert(0);
                    *k = (*k).max(set.revision);
                }
                if let Ok(mut sets) = self.sets.write() {
                    sets.entry(service.to_string())
                        .or_default()
                        .insert(environment.to_string(), set.clone());
                }
                Ok(set)
            }
            Err(e) => match cached {
                Some(set) => {
                    if !self.store_failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, service, environment,
                            "cannot rebuild a flag set; serving the last one built until the database answers");
                    }
                    Ok(set)
                }
                None => Err(e),
            },
        }
    }

    /// After this server wrote to a service's flags: its sets are older than the store
    /// (by at least one revision), so the next use rebuilds them.
    pub fn invalidate(&self, service: &str) {
        if let Ok(mut known) = self.known.write() {
            let k = known.entry(service.to_string()).or_insert(0);
            *k += 1;
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// A receiver woken whenever some service's revision moved.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The newest revision of `service` this server knows of.
    pub fn revision(&self, service: &str) -> i64 {
        self.known(service)
    }

    /// Re-reads the counters: services whose revision moved get rebuilt on next use; a
    /// moved token revision empties the SDK token cache.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let state = self.store.flag_state().await?;
        if let Ok(mut id) = self.database_id.write() {
            if *id != state.database_id {
                *id = state.database_id.clone();
            }
        }
        if self
            .token_revision
            .swap(state.token_revision, Ordering::Relaxed)
            != state.token_revision
        {
            self.tokens.clear();
        }
        let revisions = self.store.flag_revisions().await?;
        let mut moved = false;
        if let Ok(mut known) = self.known.write() {
            for (service, revision) in revisions {
                let k = known.entry(service).or_insert(0);
                if revision > *k {
                    *k = revision;
                    moved = true;
                }
            }
        }
        if moved {
            self.changed.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    /// Follows the store's flag wake-ups (and polls, for a lost one) until shutdown.
    pub async fn follow(self: Arc<Self>, shutdown: CancellationToken) {
        let mut wakes = self.store.subscribe_flags();
        let mut failing = false;
        loop {
            match self.refresh().await {
                Ok(()) => failing = false,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot read the flag revisions; retrying");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wakes.changed() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }
}
