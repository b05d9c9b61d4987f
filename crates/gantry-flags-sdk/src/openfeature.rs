//! The OpenFeature provider: [`GantryProvider`] answers OpenFeature's Rust SDK from a
//! [`Client`], and [`context_from_openfeature`] reads its evaluation context as Unleash's.
//!
//! Values, as Gantry's OFREP endpoint gives them:
//! - boolean: whether the flag is on;
//! - string: the chosen variant's payload text (any payload type), or its name when it
//!   has no payload;
//! - integer and float: a `number` payload (or a `json` payload that is a number);
//! - struct: a `json` payload that is an object.
//!
//! A flag that chose no variant has no value of the other types: the resolution fails
//! with `TYPE_MISMATCH`, so the caller's default applies (as it would through OFREP,
//! where such a flag is a boolean). An unknown flag fails with `FLAG_NOT_FOUND`, and
//! every flag with `PROVIDER_NOT_READY` until a flag set is loaded.

use std::time::Duration;

use chrono::SecondsFormat;
use gantry_flags::{Context, Payload, Reason};
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    async_trait, EvaluationContext, EvaluationContextFieldValue, EvaluationError,
    EvaluationErrorCode, EvaluationReason, EvaluationResult, StructValue, Value,
};

use crate::{Client, Evaluation};

/// Gantry's flags as an OpenFeature provider.
///
/// ```no_run
/// # async fn demo() {
/// use gantry_flags_sdk::{Client, Config, GantryProvider};
///
/// let client = Client::start(Config::new("https://gantry.example", "client-token", "checkout")).await;
/// let mut api = open_feature::OpenFeature::singleton_mut().await;
/// api.set_provider(GantryProvider::new(client)).await;
/// # }
/// ```
#[derive(Debug)]
pub struct GantryProvider {
    client: Client,
    metadata: ProviderMetadata,
    init_timeout: Duration,
}

impl GantryProvider {
    /// The name the provider gives OpenFeature.
    pub const NAME: &'static str = "gantry";

    pub fn new(client: Client) -> GantryProvider {
        GantryProvider {
            client,
            metadata: ProviderMetadata::new(GantryProvider::NAME),
            init_timeout: Duration::from_secs(5),
        }
    }

    /// How long OpenFeature's `set_provider` waits for the first flag set (default 5 s);
    /// the provider works either way, and reports not-ready until then.
    pub fn with_init_timeout(mut self, timeout: Duration) -> GantryProvider {
        self.init_timeout = timeout;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn resolve(&self, key: &str, ctx: &EvaluationContext) -> EvaluationResult<Evaluation> {
        if !self.client.ready() {
            return Err(error(
                EvaluationErrorCode::ProviderNotReady,
                "no flag set loaded yet",
            ));
        }
        self.client
            .evaluate(key, &context_from_openfeature(ctx))
            .ok_or_else(|| {
                error(
                    EvaluationErrorCode::FlagNotFound,
                    format!("no flag {key:?}"),
                )
            })
    }
}

fn error(code: EvaluationErrorCode, message: impl Into<String>) -> EvaluationError {
    EvaluationError {
        code,
        message: Some(message.into()),
    }
}

fn reason(r: Reason) -> EvaluationReason {
    match r {
        Reason::Static => EvaluationReason::Static,
        Reason::TargetingMatch => EvaluationReason::TargetingMatch,
        Reason::Split => EvaluationReason::Split,
        Reason::Default => EvaluationReason::Default,
        Reason::Disabled => EvaluationReason::Disabled,
    }
}

fn details<T>(value: T, e: &Evaluation, variant: String) -> ResolutionDetails<T> {
    ResolutionDetails {
        value,
        variant: Some(variant),
        reason: Some(reason(e.reason)),
        flag_metadata: None,
    }
}

/// The chosen variant's payload, or why a `want` value cannot come from this evaluation.
fn payload<'a>(key: &str, e: &'a Evaluation, want: &str) -> EvaluationResult<&'a Payload> {
    if !e.variant.enabled {
        let state = if e.enabled { "on" } else { "off" };
        return Err(error(
            EvaluationErrorCode::TypeMismatch,
            format!("flag {key:?} is {state} and chose no variant, so it has no {want} value"),
        ));
    }
    e.variant.payload.as_ref().ok_or_else(|| {
        error(
            EvaluationErrorCode::TypeMismatch,
            format!(
                "variant {:?} of flag {key:?} has no payload, so no {want} value",
                e.variant.name
            ),
        )
    })
}

/// A payload as the JSON its type says: `json` parsed, `number` a number, else text.
fn payload_json(key: &str, p: &Payload) -> EvaluationResult<serde_json::Value> {
    let parse_error = |what: &str| {
        error(
            EvaluationErrorCode::ParseError,
            format!("flag {key:?}: the {what} payload does not parse"),
        )
    };
    match p.r#type.as_str() {
        "json" => serde_json::from_str(&p.value).map_err(|_| parse_error("json")),
        "number" => p
            .value
            .trim()
            .parse::<serde_json::Number>()
            .map(serde_json::Value::Number)
            .map_err(|_| parse_error("number")),
        _ => Ok(serde_json::Value::String(p.value.clone())),
    }
}

fn mismatch(key: &str, want: &str, p: &Payload) -> EvaluationError {
    error(
        EvaluationErrorCode::TypeMismatch,
        format!("flag {key:?}: a {} payload is not {want}", p.r#type),
    )
}

fn as_int(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        let f = n.as_f64()?;
        // Only whole numbers in range; `as` would saturate silently.
        (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
    })
}

/// JSON as OpenFeature's value; `null`s are left out (OpenFeature has none).
fn to_value(v: &serde_json::Value) -> Option<Value> {
    Some(match v {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64()?),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => {
            Value::Array(items.iter().filter_map(to_value).collect())
        }
        serde_json::Value::Object(map) => Value::Struct(to_struct(map)),
    })
}

fn to_struct(map: &serde_json::Map<String, serde_json::Value>) -> StructValue {
    StructValue {
        fields: map
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), to_value(v)?)))
            .collect(),
    }
}

#[async_trait]
impl FeatureProvider for GantryProvider {
    async fn initialize(&mut self, _context: &EvaluationContext) {
        self.client.wait_until_ready(self.init_timeout).await;
    }

    fn status(&self) -> ProviderStatus {
        if self.client.ready() {
            ProviderStatus::Ready
        } else {
            ProviderStatus::NotReady
        }
    }

    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        let e = self.resolve(flag_key, evaluation_context)?;
        let variant = match (e.variant.enabled, e.enabled) {
            (true, _) => e.variant.name.clone(),
            (false, true) => "on".to_owned(),
            (false, false) => "off".to_owned(),
        };
        Ok(details(e.enabled, &e, variant))
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        let e = self.resolve(flag_key, evaluation_context)?;
        let p = payload(flag_key, &e, "integer")?;
        let value = match payload_json(flag_key, p)? {
            serde_json::Value::Number(n) => {
                as_int(&n).ok_or_else(|| mismatch(flag_key, "an integer", p))?
            }
            _ => return Err(mismatch(flag_key, "an integer", p)),
        };
        Ok(details(value, &e, e.variant.name.clone()))
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        let e = self.resolve(flag_key, evaluation_context)?;
        let p = payload(flag_key, &e, "float")?;
        let value = match payload_json(flag_key, p)? {
            serde_json::Value::Number(n) => {
                n.as_f64().ok_or_else(|| mismatch(flag_key, "a float", p))?
            }
            _ => return Err(mismatch(flag_key, "a float", p)),
        };
        Ok(details(value, &e, e.variant.name.clone()))
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        let e = self.resolve(flag_key, evaluation_context)?;
        let value = match payload(flag_key, &e, "string") {
            Ok(p) => p.value.clone(),
            // A variant without a payload is its name, as OFREP gives it.
            Err(_) if e.variant.enabled => e.variant.name.clone(),
            Err(err) => return Err(err),
        };
        Ok(details(value, &e, e.variant.name.clone()))
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        let e = self.resolve(flag_key, evaluation_context)?;
        let p = payload(flag_key, &e, "struct")?;
        let value = match payload_json(flag_key, p)? {
            serde_json::Value::Object(map) => to_struct(&map),
            _ => return Err(mismatch(flag_key, "an object", p)),
        };
        Ok(details(value, &e, e.variant.name.clone()))
    }
}

/// Reads OpenFeature's evaluation context as Unleash's: the targeting key is `userId`;
/// the custom fields `userId`, `sessionId`, `remoteAddress`, `environment`, `appName`
/// and `currentTime` are the top-level fields of those names (and a `userId` field wins
/// over the targeting key); every other field is a property. Numbers and booleans become
/// text, date-times RFC 3339 in UTC; structures, which Unleash's context cannot hold, are
/// left out.
pub fn context_from_openfeature(ctx: &EvaluationContext) -> Context {
    let mut out = Context {
        user_id: ctx.targeting_key.clone(),
        ..Context::default()
    };
    for (key, value) in &ctx.custom_fields {
        let text = match value {
            EvaluationContextFieldValue::Bool(b) => b.to_string(),
            EvaluationContextFieldValue::Int(i) => i.to_string(),
            EvaluationContextFieldValue::Float(f) => f.to_string(),
            EvaluationContextFieldValue::String(s) => s.clone(),
            EvaluationContextFieldValue::DateTime(t) => {
                match chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()) {
                    Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    None => continue,
                }
            }
            EvaluationContextFieldValue::Struct(_) => continue,
        };
        match key.as_str() {
            "userId" => out.user_id = Some(text),
            "sessionId" => out.session_id = Some(text),
            "remoteAddress" => out.remote_address = Some(text),
            "environment" => out.environment = Some(text),
            "appName" => out.app_name = Some(text),
            "currentTime" => out.current_time = Some(text),
            _ => {
                out.properties.insert(key.clone(), text);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use std::collections::BTreeMap;

    #[test]
    fn maps_the_evaluation_context() {
        let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid");
        let ctx = EvaluationContext::default()
            .with_targeting_key("user-1")
            .with_custom_field("sessionId", "s-1")
            .with_custom_field("remoteAddress", "10.0.0.1")
            .with_custom_field("environment", "prod")
            .with_custom_field("appName", "shop")
            .with_custom_field("currentTime", at)
            .with_custom_field("plan", "pro")
            .with_custom_field("seats", 12)
            .with_custom_field("ratio", 0.5)
            .with_custom_field("beta", true)
            .with_custom_field("blob", EvaluationContextFieldValue::new_struct(5_u8));
        let got = context_from_openfeature(&ctx);
        let properties: BTreeMap<String, String> = [
            ("plan", "pro"),
            ("seats", "12"),
            ("ratio", "0.5"),
            ("beta", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            got,
            Context {
                user_id: Some("user-1".into()),
                session_id: Some("s-1".into()),
                remote_address: Some("10.0.0.1".into()),
                environment: Some("prod".into()),
                app_name: Some("shop".into()),
                current_time: Some("2023-11-14T22:13:20Z".into()),
                properties,
            }
        );
    }

    #[test]
    fn a_user_id_field_wins_over_the_targeting_key() {
        let ctx = EvaluationContext::default()
            .with_targeting_key("from-key")
            .with_custom_field("userId", 42);
        assert_eq!(
            context_from_openfeature(&ctx).user_id.as_deref(),
            Some("42")
        );
        assert_eq!(
            context_from_openfeature(&EvaluationContext::default()),
            Context::default()
        );
    }

    #[test]
    fn json_becomes_openfeature_values() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"a":1,"b":1.5,"c":"x","d":[true,null],"e":{"f":null},"g":18446744073709551615}"#,
        )
        .expect("json");
        let Some(Value::Struct(s)) = to_value(&v) else {
            panic!("an object is a struct");
        };
        assert_eq!(s.fields["a"], Value::Int(1));
        assert_eq!(s.fields["b"], Value::Float(1.5));
        assert_eq!(s.fields["c"], Value::String("x".into()));
        assert_eq!(s.fields["d"], Value::Array(vec![Value::Bool(true)]));
        assert_eq!(s.fields["e"], Value::Struct(StructValue::default()));
        assert_eq!(s.fields["g"], Value::Float(18_446_744_073_709_551_615.0));
        assert_eq!(
            as_int(&serde_json::Number::from_f64(3.0).expect("finite")),
            Some(3)
        );
        assert_eq!(
            as_int(&serde_json::Number::from_f64(3.5).expect("finite")),
            None
        );
        assert_eq!(
            as_int(&serde_json::Number::from_f64(1e300).expect("finite")),
            None
        );
    }

    fn provider_over(features: serde_json::Value) -> GantryProvider {
        let doc = serde_json::from_value(serde_json::json!({"version": 2, "features": features}))
            .expect("doc");
        let client =
            futures::executor::block_on(Client::start(Config::offline("t").with_bootstrap(doc)));
        GantryProvider::new(client)
    }

    #[tokio::test]
    async fn resolves_each_type() {
        let ctx = EvaluationContext::default().with_targeting_key("u");
        let p = provider_over(serde_json::json!([
            {"name": "on", "enabled": true},
            {"name": "off", "enabled": false},
            {"name": "n", "enabled": true, "variants": [{"name": "v", "weight": 1000, "payload": {"type": "number", "value": "42"}}]},
            {"name": "f", "enabled": true, "variants": [{"name": "v", "weight": 1000, "payload": {"type": "number", "value": "2.5"}}]},
            {"name": "j", "enabled": true, "variants": [{"name": "v", "weight": 1000, "payload": {"type": "json", "value": "{\"k\":[1]}"}}]},
            {"name": "s", "enabled": true, "variants": [{"name": "v", "weight": 1000, "payload": {"type": "string", "value": "hi"}}]},
            {"name": "bare", "enabled": true, "variants": [{"name": "plain", "weight": 1000}]},
            {"name": "bad.number", "enabled": true, "variants": [{"name": "v", "weight": 1000, "payload": {"type": "number", "value": "lots"}}]}
        ]));
        assert_eq!(p.status(), ProviderStatus::Ready);
        assert_eq!(p.metadata().name, "gantry");

        let on = p.resolve_bool_value("on", &ctx).await.expect("known");
        assert!(on.value);
        assert_eq!(
            (on.variant.as_deref(), on.reason),
            (Some("on"), Some(EvaluationReason::Static))
        );
        let off = p.resolve_bool_value("off", &ctx).await.expect("known");
        assert!(!off.value);
        assert_eq!(
            (off.variant.as_deref(), off.reason),
            (Some("off"), Some(EvaluationReason::Disabled))
        );

        assert_eq!(p.resolve_int_value("n", &ctx).await.expect("int").value, 42);
        assert_eq!(
            p.resolve_float_value("n", &ctx).await.expect("float").value,
            42.0
        );
        assert_eq!(
            p.resolve_float_value("f", &ctx).await.expect("float").value,
            2.5
        );
        assert_eq!(
            p.resolve_string_value("s", &ctx)
                .await
                .expect("string")
                .value,
            "hi"
        );
        assert_eq!(
            p.resolve_string_value("n", &ctx)
                .await
                .expect("string")
                .value,
            "42"
        );
        assert_eq!(
            p.resolve_string_value("bare", &ctx)
                .await
                .expect("string")
                .value,
            "plain"
        );
        let j = p.resolve_struct_value("j", &ctx).await.expect("struct");
        assert_eq!(j.value.fields["k"], Value::Array(vec![Value::Int(1)]));
        assert_eq!(j.variant.as_deref(), Some("v"));

        fn code<T>(r: EvaluationResult<ResolutionDetails<T>>) -> EvaluationErrorCode {
            r.map(|_| ()).expect_err("fails").code
        }
        assert_eq!(
            code(p.resolve_int_value("f", &ctx).await),
            EvaluationErrorCode::TypeMismatch
        );
        assert_eq!(
            code(p.resolve_int_value("s", &ctx).await),
            EvaluationErrorCode::TypeMismatch
        );
        assert_eq!(
            code(p.resolve_struct_value("n", &ctx).await),
            EvaluationErrorCode::TypeMismatch
        );
        assert_eq!(
            code(p.resolve_string_value("on", &ctx).await),
            EvaluationErrorCode::TypeMismatch
        );
        assert_eq!(
            code(p.resolve_string_value("off", &ctx).await),
            EvaluationErrorCode::TypeMismatch
        );
        assert_eq!(
            code(p.resolve_int_value("bad.number", &ctx).await),
            EvaluationErrorCode::ParseError
        );
        assert_eq!(
            code(p.resolve_bool_value("missing", &ctx).await),
            EvaluationErrorCode::FlagNotFound
        );
        assert_eq!(
            code(p.resolve_string_value("missing", &ctx).await),
            EvaluationErrorCode::FlagNotFound
        );
    }

    #[tokio::test]
    async fn a_split_is_reported_as_such() {
        let p = provider_over(
            serde_json::json!([{"name": "ab", "enabled": true, "variants": [
            {"name": "a", "weight": 500, "payload": {"type": "string", "value": "A"}},
            {"name": "b", "weight": 500, "payload": {"type": "string", "value": "B"}}]}]),
        );
        let ctx = EvaluationContext::default().with_targeting_key("user-7");
        let got = p.resolve_string_value("ab", &ctx).await.expect("known");
        assert_eq!(got.reason, Some(EvaluationReason::Split));
        assert!(got.value == "A" || got.value == "B");
        let again = p.resolve_string_value("ab", &ctx).await.expect("known");
        assert_eq!(got.value, again.value, "sticky by user id");
    }

    #[tokio::test]
    async fn before_any_flag_set_the_provider_is_not_ready() {
        let client =
            Client::start(Config::new("http://127.0.0.1:9", "t", "a").with_metrics(false)).await;
        let mut p = GantryProvider::new(client).with_init_timeout(Duration::from_millis(10));
        p.initialize(&EvaluationContext::default()).await;
        assert_eq!(p.status(), ProviderStatus::NotReady);
        let err = p
            .resolve_bool_value("x", &EvaluationContext::default())
            .await
            .expect_err("not ready");
        assert_eq!(err.code, EvaluationErrorCode::ProviderNotReady);
        p.client().shutdown().await;
    }
}
