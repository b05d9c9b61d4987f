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
}

impl ScopeName {
    pub const ALL: [ScopeName; 7] = [
        ScopeName::Read,
        ScopeName::Write,
        ScopeName::Deploy,
        ScopeName::Flags,
        ScopeName::Migrate,
        ScopeName::Admin,
        ScopeName::Agent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScopeName::Read => "read",
            ScopeName::Write => "write",
            ScopeName::Deploy => "deploy",
            ScopeName::Flags => "flags",
            ScopeName::Migrate => "migrate",
            ScopeName::Admin => "admin",
            ScopeName::Agent => "agent",
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

    /// Parses a comma-separated list (`read,deploy:shop@stage`), refusing an empty one.
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
        Ok(scopes)
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
        if self.name != needed && self.name != ScopeName::Admin {
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
            .any(|s| s.name == needed || s.name == ScopeName::Admin)
    }

    /// Whether `needed` is held without narrowing, so no per-record filtering is required.
    pub fn holds_everywhere(&self, needed: ScopeName) -> bool {
        self.scopes
            .iter()
            .any(|s| (s.name == needed || s.name == ScopeName::Admin) && !s.is_narrowed())
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
    }
}
