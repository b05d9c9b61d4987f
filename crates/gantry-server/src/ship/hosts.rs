//! Rules about hosts that the API and the dashboard share.

use gantry_core::ship::Host;

use crate::error::ApiError;
use crate::state::AppState;

/// Puts a host in maintenance (its agent drains every service and deploys skip it) or takes
/// it out, and wakes its agent so it acts at once. The caller has checked the scope.
pub async fn set_maintenance(state: &AppState, name: &str, on: bool) -> Result<Host, ApiError> {
    state.store.set_host_maintenance(name, on).await?;
    state.bell.ring(&[name.to_string()]);
    tracing::info!(host = %name, on, "host maintenance set");
    crate::api::hosts::load(state, name).await
}
