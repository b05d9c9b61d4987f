//! Token scopes: what a token may do, optionally narrowed to one service and/or environment.
//!
//! Written `name[:service][@environment]`, e.g. `read`, `deploy:shop`, `deploy:shop@stage`,
//! `write@prod`. `admin` grants everything; every other scope grants exactly itself.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::names::validate_name;
use crate::Invalid;

/// The capabilities a token can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeName {
    /// Read changes, services, events.
    Read,
    /// Record and update changes.
    Write,
    /// Push builds and deploy them.
    Deploy,
    /// Change feature flags.
    Flags,
    /// Run database migrations.
    Migrate,
    /// Everything, including tokens and services.
    Admin,
    /// What a host agent needs.
    Agent,
    /// A server-side flag SDK of one service in one environment (Unleash client API, OFREP,
    /// the flag stream). Never implied by `admin`.
    Client,
    /// A browser's flag SDK of one service in one environment (frontend API, OFREP): only
    /// evaluated results, never definitions. Never implied by `admin`.
    Frontend,
}

impl ScopeName {
    pub const ALL: [ScopeName; 9] = [
        ScopeName::Read,
        ScopeName::Write,
        ScopeName::Deploy,
        ScopeName::Flags,
        ScopeName::Migrate,
        ScopeName::Admin,
        ScopeName::Agent,
        ScopeName::Client,
        ScopeName::Frontend,
    ];

    /// Scopes for flag SDKs: bound to exactly one service and environment, alone on their
    /// token, and not granted by `admin` (a browser token must never grow into more).
    pub fn is_sdk(self) -> bool {
        matches!(self, ScopeName::Client | ScopeName::Frontend)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ScopeName::Read => "read",
            ScopeName::Write => "write",
            ScopeName::Deploy => "deploy",
            ScopeName::Flags => "flags",
            ScopeName::Migrate => "migrate",
            ScopeName::Admin => "admin",
            ScopeName::Agent => "agent",
            ScopeName::Client => "client",
            ScopeName::Frontend => "frontend",
        }
    }
}

impl fmt::Display for ScopeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ScopeName {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        ScopeName::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = ScopeName::ALL.iter().map(|n| n.as_str()).collect();
                Invalid::new(format!(
                    "unknown scope '{s}'; expected one of {}",
                    all.join(", ")
                ))
            })
    }
}

/// One scope a token holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub name: ScopeName,
    pub service: Option<String>,
    pub environment: Option<String>,
}

impl Scope {
    pub fn new(name: ScopeName) -> Scope {
        Scope {
            name,
            service: None,
            environment: None,
        }
    }

    /// Parses a comma-separated list (`read,deploy:shop@stage`), refusing an empty one and
    /// an SDK scope (`client:S@E`, `frontend:S@E`) beside any other.
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, Invalid> {
        let mut scopes: Vec<Scope> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if scopes.is_empty() {
            return Err(Invalid::new(
                "at least one scope is required, e.g. read,write",
            ));
        }
        scopes.sort();
        scopes.dedup();
        Scope::check_set(&scopes)?;
        Ok(scopes)
    }

    /// An SDK scope names the one service and environment its token serves, so it must be
    /// the token's only scope.
    pub fn check_set(scopes: &[Scope]) -> Result<(), Invalid> {
        if let Some(sdk) = scopes.iter().find(|s| s.name.is_sdk()) {
            if scopes.len() > 1 {
                return Err(Invalid::new(format!(
                    "scope '{sdk}' must be a token's only scope: a {} token serves exactly one service and environment; create one token per service and environment",
                    sdk.name
                )));
            }
        }
        Ok(())
    }

    /// Whether a token with these scopes is an SDK token (kept apart from the others).
    pub fn is_sdk_set(scopes: &[Scope]) -> bool {
        scopes.iter().any(|s| s.name.is_sdk())
    }

    pub fn format_list(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(Scope::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether this scope allows `needed` on the given service and environment. A scope
    /// narrowed to a service or environment allows nothing where that is unknown (`None`).
    pub fn allows(
        &self,
        needed: ScopeName,
        service: Option<&str>,
        environment: Option<&str>,
    ) -> bool {
        if self.name != needed && (self.name != ScopeName::Admin || needed.is_sdk()) {
            return false;
        }
        let service_ok = self.service.as_deref().is_none_or(|s| Some(s) == service);
        let env_ok = self
            .environment
            .as_deref()
            .is_none_or(|e| Some(e) == environment);
        service_ok && env_ok
    }

    pub fn is_narrowed(&self) -> bool {
        self.service.is_some() || self.environment.is_some()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name.as_str())?;
        if let Some(service) = &self.service {
            write!(f, ":{service}")?;
        }
        if let Some(environment) = &self.environment {
            write!(f, "@{environment}")?;
        }
        Ok(())
    }
}

impl FromStr for Scope {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let (rest, environment) = match s.split_once('@') {
            Some((rest, env)) => (rest, Some(env)),
            None => (s, None),
        };
        let (name, service) = match rest.split_once(':') {
            Some((name, service)) => (name, Some(service)),
            None => (rest, None),
        };
        let name: ScopeName = name.parse()?;
        if let Some(service) = service {
            validate_name("scope service", service)
                .map_err(|e| Invalid::new(format!("scope '{s}': {e}")))?;
        }
        if let Some(environment) = environment {
            validate_name("scope environment", environment)
                .map_err(|e| Invalid::new(format!("scope '{s}': {e}")))?;
        }
        if name == ScopeName::Admin && (service.is_some() || environment.is_some()) {
            return Err(Invalid::new(format!(
                "scope '{s}': admin cannot be narrowed to a service or environment"
            )));
        }
        if name.is_sdk() && (service.is_none() || environment.is_none()) {
            return Err(Invalid::new(format!(
                "scope '{s}': a {name} scope names exactly one service and one environment, e.g. {name}:shop@prod"
            )));
        }
        Ok(Scope {
            name,
            service: service.map(str::to_string),
            environment: environment.map(str::to_string),
        })
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a token is allowed: its scopes, with the question "may it do X here?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub token_name: String,
    pub scopes: Vec<Scope>,
}

impl Grant {
    pub fn allows(
        &self,
        needed: ScopeName,
        service: Option<&str>,
        environment: Option<&str>,
    ) -> bool {
        self.scopes
            .iter()
            .any(|s| s.allows(needed, service, environment))
    }

    /// Whether the token holds `needed` somewhere (for any service or environment).
    pub fn holds_somewhere(&self, needed: ScopeName) -> bool {
        self.scopes
            .iter()
            .any(|s| s.name == needed || (s.name == ScopeName::Admin && !needed.is_sdk()))
    }

    /// Whether `needed` is held without narrowing, so no per-record filtering is required.
    pub fn holds_everywhere(&self, needed: ScopeName) -> bool {
        self.scopes.iter().any(|s| {
            (s.name == needed || (s.name == ScopeName::Admin && !needed.is_sdk()))
                && !s.is_narrowed()
        })
    }

    /// The service and environment an SDK token serves, when it holds `needed`.
    pub fn sdk_target(&self, needed: ScopeName) -> Option<(&str, &str)> {
        self.scopes
            .iter()
            .find_map(|s| match (&s.service, &s.environment) {
                (Some(service), Some(environment)) if s.name == needed => {
                    Some((service.as_str(), environment.as_str()))
                }
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        for s in [
            "read",
            "deploy:shop",
            "deploy:shop@stage",
            "write@prod",
            "admin",
        ] {
            assert_eq!(s.parse::<Scope>().unwrap().to_string(), s);
        }
        let cases = [
            ("reed", "unknown scope 'reed'"),
            ("deploy:", "scope 'deploy:'"),
            ("deploy:a b", "not a valid name"),
            ("admin:shop", "admin cannot be narrowed"),
            ("read@", "must not be empty"),
        ];
        for (input, expected) in cases {
            let err = input.parse::<Scope>().unwrap_err();
            assert!(err.0.contains(expected), "{input}: {err}");
        }
        assert!(Scope::parse_list(" , ").is_err());
        assert_eq!(
            Scope::format_list(&Scope::parse_list("write,read,read").unwrap()),
            "read,write"
        );
    }

    #[test]
    fn allows() {
        let check = |scope: &str, needed: ScopeName, service: Option<&str>, env: Option<&str>| {
            scope.parse::<Scope>().unwrap().allows(needed, service, env)
        };
        use ScopeName::*;
        assert!(check("read", Read, None, None));
        assert!(!check("read", Write, Some("shop"), Some("prod")));
        assert!(check("admin", Deploy, Some("shop"), Some("prod")));
        assert!(check("deploy:shop", Deploy, Some("shop"), Some("prod")));
        assert!(!check("deploy:shop", Deploy, Some("cart"), Some("prod")));
        assert!(!check("deploy:shop", Deploy, None, Some("prod")));
        assert!(check(
            "deploy:shop@stage",
            Deploy,
            Some("shop"),
            Some("stage")
        ));
        assert!(!check(
            "deploy:shop@stage",
            Deploy,
            Some("shop"),
            Some("prod")
        ));
        assert!(check("write@prod", Write, Some("any"), Some("prod")));
        assert!(!check("write@prod", Write, Some("any"), None));
        // SDK scopes are never implied by admin, and grant nothing else.
        assert!(!check("admin", Client, Some("shop"), Some("prod")));
        assert!(!check("admin", Frontend, Some("shop"), Some("prod")));
        assert!(check(
            "client:shop@prod",
            Client,
            Some("shop"),
            Some("prod")
        ));
        assert!(!check("client:shop@prod", Read, Some("shop"), Some("prod")));
        assert!(!check(
            "frontend:shop@prod",
            Client,
            Some("shop"),
            Some("prod")
        ));
        // Per-environment flag scopes do not cover the flag as a whole.
        assert!(check("flags:shop@prod", Flags, Some("shop"), Some("prod")));
        assert!(!check("flags:shop@prod", Flags, Some("shop"), None));
    }

    #[test]
    fn sdk_scopes_name_one_service_and_environment_alone() {
        for bad in ["client", "client:shop", "frontend@prod", "client@prod"] {
            let err = bad.parse::<Scope>().unwrap_err();
            assert!(
                err.0.contains("exactly one service and one environment"),
                "{bad}: {err}"
            );
        }
        for bad in ["client:shop@prod,client:cart@prod", "client:shop@prod,read"] {
            let err = Scope::parse_list(bad).unwrap_err();
            assert!(err.0.contains("only scope"), "{bad}: {err}");
        }
        let scopes = Scope::parse_list("frontend:shop@prod").unwrap();
        assert!(Scope::is_sdk_set(&scopes));
        let grant = Grant {
            token_name: "web".into(),
            scopes,
        };
        assert_eq!(
            grant.sdk_target(ScopeName::Frontend),
            Some(("shop", "prod"))
        );
        assert_eq!(grant.sdk_target(ScopeName::Client), None);
    }
}
