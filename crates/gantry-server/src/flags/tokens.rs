//! SDK tokens (`client:S@E`, `frontend:S@E`): looked up once and kept in memory by digest,
//! so evaluation serves at memory speed and keeps serving while the database is briefly
//! away. A revocation bumps the store's token revision; every server's follower sees it
//! (by `NOTIFY`, or its next poll) and empties this cache.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use gantry_core::{Scope, ScopeName};
use gantry_store::Store;

use crate::error::ApiError;

/// Entries beyond this many are dropped wholesale (a flood of distinct valid tokens is
/// not a thing; this only bounds memory).
const MAX_CACHED: usize = 10_000;

/// Who an SDK request is: the token's name, and the one service and environment it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkCaller {
    pub token_name: String,
    pub kind: ScopeName,
    pub service: String,
    pub environment: String,
}

struct Cached {
    caller: Option<Arc<SdkCaller>>,
    /// Scopes of a token that is not an SDK token, to name them in a 403.
    scopes: String,
    expires_at: Option<DateTime<Utc>>,
}

pub struct SdkTokens {
    store: Arc<dyn Store>,
    cache: RwLock<HashMap<String, Arc<Cached>>>,
}

impl SdkTokens {
    pub fn new(store: Arc<dyn Store>) -> SdkTokens {
        SdkTokens {
            store,
            cache: RwLock::new(HashMap::new()),
        }
    }

    pub fn clear(&self) {
        if let Ok(mut cache) = self.cache.write() {
            cache.clear();
        }
    }

    /// The SDK caller of a request that needs one of `kinds`; 401 without a valid token,
    /// 403 naming the scope needed for any other token (`admin` included).
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        kinds: &[ScopeName],
    ) -> Result<Arc<SdkCaller>, ApiError> {
        let secret = sdk_secret(headers)?;
        let digest = gantry_core::token::digest(&secret);
        let cached = self.cache.read().ok().and_then(|c| c.get(&digest).cloned());
        let entry =
            match cached {
                Some(found) => found,
                None => {
                    let record = self
                        .store
                        .token_by_digest(&digest)
                        .await?
                        .ok_or_else(|| ApiError::unauthorized("the token is not valid"))?;
                    if record.revoked {
                        return Err(ApiError::unauthorized(format!(
                            "token '{}' has been revoked",
                            record.info.name
                        )));
                    }
                    let caller = record.info.scopes.iter().find_map(|s| {
                        match (&s.service, &s.environment) {
                            (Some(service), Some(environment)) if s.name.is_sdk() => {
                                Some(Arc::new(SdkCaller {
                                    token_name: record.info.name.clone(),
                                    kind: s.name,
                                    service: service.clone(),
                                    environment: environment.clone(),
                                }))
                            }
                            _ => None,
                        }
                    });
                    let entry = Arc::new(Cached {
                        caller,
                        scopes: Scope::format_list(&record.info.scopes),
                        expires_at: record.info.expires_at,
                    });
                    if entry.caller.is_some() {
                        if let Ok(mut cache) = self.cache.write() {
                            if cache.len() >= MAX_CACHED {
                                cache.clear();
                            }
                            cache.insert(digest, entry.clone());
                        }
                    }
                    entry
                }
            };
        if entry.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(ApiError::unauthorized("the token has expired"));
        }
        if let Some(caller) = entry.caller.as_ref().filter(|c| kinds.contains(&c.kind)) {
            return Ok(caller.clone());
        }
        let needed = kinds
            .iter()
            .map(|k| format!("{k}:SERVICE@ENV"))
            .collect::<Vec<_>>()
            .join(" or ");
        match &entry.caller {
            Some(caller) => Err(ApiError::forbidden(format!(
                "token '{}' has the scope {}:{}@{}; this route needs {needed}",
                caller.token_name, caller.kind, caller.service, caller.environment
            ))),
            None => Err(ApiError::forbidden(format!(
                "this route serves flag SDKs and needs a token with the scope {needed} (this token has {}); create one with `gantry token create NAME --scopes client:SERVICE@ENV`",
                entry.scopes
            ))),
        }
    }
}

/// The token of an SDK request: Unleash SDKs send the bare token as `Authorization`, others
/// `Bearer <token>`.
fn sdk_secret(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "this endpoint needs an SDK token: send Authorization: <token> (create one with `gantry token create NAME --scopes client:SERVICE@ENV`)",
            )
        })?
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not readable text"))?;
    gantry_core::http::sdk_secret(value).map_err(|e| ApiError::unauthorized(e.0))
}
