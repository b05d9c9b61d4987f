//! Request extractors whose rejections are [`ApiError`]s, so a malformed body or query
//! gets the same JSON error shape as every other failure.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body; see [`axum::Json`].
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with the header Content-Type: application/json",
            ));
        }
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than this endpoint accepts",
                ))
            }
            Err(rejection) => return Err(ApiError::invalid(rejection.body_text())),
        };
        // Every body of this API is an object; say so instead of serde's view of an array.
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => {}
            None => return Err(ApiError::invalid("the body is empty; send a JSON object")),
            Some(_) => return Err(ApiError::invalid("the body must be a JSON object")),
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => match whole_numbers_as_integers(&bytes, &rejection) {
                Some(value) => Ok(Json(value)),
                None => Err(json_rejection(rejection)),
            },
        }
    }
}

/// JSON does not tell `5` from `5.0`, and neither does JSON Schema's `integer` (which the
/// OpenAPI document uses for counts): a body that serde refused only because an integer
/// field holds a whole number written with a fraction is read again with those numbers as
/// integers. Anything else keeps the first refusal, which names the field.
fn whole_numbers_as_integers<T: DeserializeOwned>(
    bytes: &[u8],
    rejection: &JsonRejection,
) -> Option<T> {
    if !rejection
        .body_text()
        .contains("invalid type: floating point")
    {
        return None;
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    integers_for_whole_floats(&mut value);
    serde_json::from_value(value).ok()
}

fn integers_for_whole_floats(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0) {
                // Within ±2^53 a float holds every whole number exactly.
                const EXACT: f64 = 9_007_199_254_740_992.0;
                if (-EXACT..=EXACT).contains(&f) {
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integers_for_whole_floats),
        Value::Object(fields) => fields.values_mut().for_each(integers_for_whole_floats),
        _ => {}
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    match rejection {
        JsonRejection::JsonSyntaxError(e) => ApiError::invalid(format!(
            "the body is not valid JSON: {}",
            inner_message(&e.body_text())
        )),
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            inner_message(&e.body_text()),
        ),
        other => ApiError::new(status, "invalid_request", other.body_text()),
    }
}

/// axum prefixes serde's precise message with a generic sentence; keep the precise part.
fn inner_message(text: &str) -> String {
    text.split_once(": ")
        .map_or(text, |(_, rest)| rest)
        .to_string()
}

/// Query parameters; see [`axum::extract::Query`].
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::invalid(
                format!("bad query string: {}", inner_message(&e.body_text())),
            )),
            Err(other) => Err(ApiError::invalid(other.body_text())),
        }
    }
}

/// The peer's address when the server knows it (it does behind `serve`; tests that call
/// the router directly have none).
pub struct Peer(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_the_precise_part() {
        assert_eq!(
            super::inner_message(
                "Failed to deserialize the JSON body into the target type: summary: invalid type"
            ),
            "summary: invalid type"
        );
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Counts {
        batch: u64,
        ratio: f64,
        nested: Vec<u32>,
    }

    async fn read(body: &str) -> Result<Counts, String> {
        let request = axum::http::Request::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        <super::Json<Counts> as axum::extract::FromRequest<()>>::from_request(request, &())
            .await
            .map(|super::Json(c)| c)
            .map_err(|e| e.message)
    }

    #[tokio::test]
    async fn whole_floats_are_integers_and_fractions_are_refused() {
        let want = Counts {
            batch: 5000,
            ratio: 2.0,
            nested: vec![1, 2],
        };
        assert_eq!(
            read(r#"{"batch": 5000.0, "ratio": 2, "nested": [1.0, 2]}"#).await,
            Ok(want)
        );
        let err = read(r#"{"batch": 5000.5, "ratio": 2, "nested": []}"#)
            .await
            .unwrap_err();
        assert!(err.contains("batch") && err.contains("5000.5"), "{err}");
        let err = read(r#"{"batch": -1.0, "ratio": 2, "nested": []}"#)
            .await
            .unwrap_err();
        assert!(err.contains("batch"), "{err}");
    }
}
