//! `[metrics.remote_read]`: the render API reads from a graphite-web-compatible cluster
//! (graphite-web, carbonapi, VictoriaMetrics' Graphite API) instead of, or merged with, the
//! embedded store, so graphs and detection keep working after metrics move to a cluster.

use std::time::Duration;

use gantry_render::{RenderError, Series};
use serde::{Deserialize, Serialize};

/// The `[metrics.remote_read]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteReadConfig {
    /// Base URL of the cluster's Graphite API, e.g. `http://graphite.internal:8080`; empty
    /// for none.
    pub url: String,
    /// `merge`: local and remote series together (local wins a name both have); `replace`:
    /// only the remote.
    pub mode: RemoteMode,
    /// Longest wait for the remote, in seconds.
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteMode {
    Merge,
    Replace,
}

impl Default for RemoteReadConfig {
    fn default() -> Self {
        RemoteReadConfig {
            url: String::new(),
            mode: RemoteMode::Merge,
            timeout_secs: 10,
        }
    }
}

#[derive(Deserialize, Serialize)]
struct RemoteSeries {
    target: String,
    datapoints: Vec<(Option<f64>, i64)>,
}

/// A client for one remote Graphite API.
#[derive(Clone)]
pub struct RemoteRead {
    base: String,
    pub mode: RemoteMode,
    http: reqwest::Client,
}

impl RemoteRead {
    pub fn new(config: &RemoteReadConfig) -> anyhow::Result<Option<RemoteRead>> {
        if config.url.trim().is_empty() {
            return Ok(None);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            .build()?;
        Ok(Some(RemoteRead {
            base: config.url.trim_end_matches('/').to_string(),
            mode: config.mode,
            http,
        }))
    }

    /// The remote's series for a path pattern over `[from, until)`.
    pub async fn find(
        &self,
        pattern: &str,
        from: i64,
        until: i64,
    ) -> Result<Vec<Series>, RenderError> {
        let url = format!("{}/render", self.base);
        let answer = self
            .http
            .get(&url)
            .query(&[
                ("target", pattern),
                ("from", &from.to_string()),
                ("until", &until.to_string()),
                ("format", "json"),
            ])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| RenderError::Source(format!("remote Graphite at {}: {e}", self.base)))?;
        let series: Vec<RemoteSeries> = answer.json().await.map_err(|e| {
            RenderError::Source(format!(
                "remote Graphite at {} answered something other than render JSON: {e}",
                self.base
            ))
        })?;
        Ok(series.into_iter().filter_map(to_series).collect())
    }

    /// The remote's metric names matching a pattern (from `/metrics/expand`).
    pub async fn names(&self, pattern: &str) -> Result<Vec<String>, RenderError> {
        #[derive(Deserialize, Serialize)]
        struct Expanded {
            results: Vec<String>,
        }
        let url = format!("{}/metrics/expand", self.base);
        let answer = self
            .http
            .get(&url)
            .query(&[("query", pattern), ("leavesOnly", "1")])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| RenderError::Source(format!("remote Graphite at {}: {e}", self.base)))?;
        let expanded: Expanded = answer
            .json()
            .await
            .map_err(|e| RenderError::Source(format!("remote Graphite at {}: {e}", self.base)))?;
        Ok(expanded.results)
    }
}

/// Render JSON back into a series: the step is the spacing of the timestamps.
fn to_series(remote: RemoteSeries) -> Option<Series> {
    let first = remote.datapoints.first()?.1;
    let step = match remote.datapoints.get(1) {
        Some((_, second)) if second > &first => second - first,
        _ => 60,
    };
    let values: Vec<Option<f64>> = remote.datapoints.iter().map(|(v, _)| *v).collect();
    let end = first + step * values.len() as i64;
    Some(Series::new(remote.target, first, end, step, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_json_becomes_a_series() {
        let remote = RemoteSeries {
            target: "a.b".into(),
            datapoints: vec![(Some(1.0), 100), (None, 110), (Some(3.0), 120)],
        };
        let series = to_series(remote).unwrap();
        assert_eq!((series.start, series.end, series.step), (100, 130, 10));
        assert_eq!(series.values, vec![Some(1.0), None, Some(3.0)]);
        assert!(to_series(RemoteSeries {
            target: "x".into(),
            datapoints: vec![]
        })
        .is_none());
    }
}
