//! Reading a client document (from the server, a bootstrap file or a string) and what
//! the client needs to know about one before it evaluates from it.

use std::path::Path;

use gantry_flags::ClientFeatures;

use crate::Error;

/// Reads a client document: the JSON `GET /api/client/features` answers
/// (`{"version": 2, "features": [...], "segments": [...]}`). Fails, never panics, on
/// anything else.
pub fn load_document(text: &str) -> Result<ClientFeatures, Error> {
    load_bytes(text.as_bytes())
}

pub(crate) fn load_bytes(bytes: &[u8]) -> Result<ClientFeatures, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Document(e.to_string()))
}

pub(crate) fn load_file(path: &Path) -> Result<ClientFeatures, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Bootstrap {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    load_bytes(&bytes).map_err(|e| Error::Bootstrap {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// What a document's flags could read besides the caller's context; an evaluation pays
/// only for what its flag set needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reads {
    /// The `appName` or `environment` field (a constraint, an override, a stickiness, a
    /// parameter): evaluations fill them in from the configuration, on a copy of the
    /// caller's context, when the caller left them unset.
    pub(crate) app_or_environment: bool,
    /// The clock (a `currentTime` or date constraint): evaluations read `Utc::now()`.
    pub(crate) clock: bool,
}

/// Deliberately blunt: any key or text anywhere in the document that names the field or
/// the operator counts, so no new way for the engine to read one can be missed.
pub(crate) fn reads(doc: &ClientFeatures) -> Reads {
    fn walk(v: &serde_json::Value, found: &mut Reads) {
        match v {
            serde_json::Value::String(s) => note(s, found),
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| {
                note(k, found);
                walk(v, found);
            }),
            _ => {}
        }
    }
    fn note(s: &str, found: &mut Reads) {
        match s {
            "appName" | "environment" => found.app_or_environment = true,
            "currentTime" | "DATE_AFTER" | "DATE_BEFORE" => found.clock = true,
            _ => {}
        }
    }
    let mut found = Reads {
        app_or_environment: false,
        clock: false,
    };
    // Only what evaluation reads: the document's `query` echoes the environment it was
    // asked for, which no flag reads.
    let read = serde_json::to_value(&doc.features)
        .and_then(|features| Ok((features, serde_json::to_value(&doc.segments)?)));
    match read {
        Ok((features, segments)) => {
            walk(&features, &mut found);
            walk(&segments, &mut found);
        }
        Err(_) => {
            found = Reads {
                app_or_environment: true,
                clock: true,
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_load_and_garbage_does_not() {
        let doc = load_document(r#"{"version":2,"features":[{"name":"f","enabled":true}]}"#)
            .expect("valid");
        assert_eq!(doc.features.len(), 1);
        for garbage in [
            "",
            "<html>",
            "[]",
            "{}",
            r#"{"version":"two"}"#,
            "{\"version\":2,",
        ] {
            assert!(
                matches!(load_document(garbage), Err(Error::Document(_))),
                "{garbage}"
            );
        }
    }

    #[test]
    fn a_missing_bootstrap_file_names_its_path() {
        let err = load_file(Path::new("/nonexistent/flags.json")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/flags.json"), "{err}");
    }

    #[test]
    fn finds_what_a_document_reads() {
        let plain = load_document(
            r#"{"version":2,"features":[{"name":"f","enabled":true,"strategies":[
                {"name":"default","constraints":[{"contextName":"userId","operator":"IN","values":["a"]}]}]}]}"#,
        )
        .expect("valid");
        let nothing = Reads {
            app_or_environment: false,
            clock: false,
        };
        assert_eq!(reads(&plain), nothing);
        // The query a server echoes names the environment; no flag reads it.
        let served = load_document(
            r#"{"version":2,"features":[{"name":"f","enabled":true}],"query":{"environment":"prod","project":["shop"]}}"#,
        )
        .expect("valid");
        assert_eq!(reads(&served), nothing);
        for (field, operator, expected) in [
            ("appName", "IN", (true, false)),
            ("environment", "IN", (true, false)),
            ("currentTime", "DATE_AFTER", (false, true)),
            ("signup", "DATE_BEFORE", (false, true)),
        ] {
            let doc = load_document(&format!(
                r#"{{"version":2,"features":[{{"name":"f","enabled":true,"strategies":[
                    {{"name":"default","constraints":[{{"contextName":"{field}","operator":"{operator}","values":["a"]}}]}}]}}]}}"#
            ))
            .expect("valid");
            let got = reads(&doc);
            assert_eq!(
                (got.app_or_environment, got.clock),
                expected,
                "{field} {operator}"
            );
        }
        let segment = load_document(
            r#"{"version":2,"features":[],"segments":[{"id":1,"constraints":[
                {"contextName":"environment","operator":"IN","values":["prod"]}]}]}"#,
        )
        .expect("valid");
        assert!(reads(&segment).app_or_environment);
    }
}
