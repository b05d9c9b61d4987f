//! Services and their environment pipelines.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::names::validate_name;
use crate::Invalid;

/// A deployable thing and the ordered environments a build is promoted through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Service {
    pub name: String,
    /// Promotion order, left to right (`dev`, `stage`, `prod`).
    pub environments: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// The body of `POST /api/v1/services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewService {
    pub name: String,
    #[serde(default)]
    pub environments: Vec<String>,
}

impl NewService {
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_name("service", &self.name)?;
        for (i, env) in self.environments.iter().enumerate() {
            validate_name("environment", env)?;
            if self.environments[..i].contains(env) {
                return Err(Invalid::new(format!(
                    "environment '{env}' appears twice in the pipeline"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines() {
        let ok = NewService {
            name: "shop".into(),
            environments: vec!["dev".into(), "stage".into(), "prod".into()],
        };
        assert!(ok.validate().is_ok());
        let dup = NewService {
            name: "shop".into(),
            environments: vec!["dev".into(), "dev".into()],
        };
        assert!(dup.validate().unwrap_err().0.contains("appears twice"));
        let bad = NewService {
            name: "shop".into(),
            environments: vec!["pr od".into()],
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .0
            .contains("environment 'pr od'"));
    }
}
