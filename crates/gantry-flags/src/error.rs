//! The crate's one error type: a definition or document that Gantry refuses, naming the
//! field at fault so an API client can point at it.

/// Why a definition, a segment, a flag name or an imported document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// A field breaks a rule; `path` is like `strategies[0].constraints[1].operator`.
    #[error("{path}: {message}")]
    Field { path: String, message: String },
    /// The text is not the JSON document it should be.
    #[error("not a valid {what}: {message}")]
    Document { what: &'static str, message: String },
}

impl Invalid {
    pub(crate) fn field(path: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid::Field {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The path of the offending field, when one field is at fault.
    pub fn path(&self) -> Option<&str> {
        match self {
            Invalid::Field { path, .. } => Some(path),
            Invalid::Document { .. } => None,
        }
    }
}
