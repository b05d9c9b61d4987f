//! `/assets/{file}`: the embedded browser files, by their content-hashed names, cached for
//! a year (a new build of a file has a new name).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::view::UiError;

pub async fn serve(Path(file): Path<String>) -> Response {
    match gantry_web_assets::by_file(&file) {
        Some(asset) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, gantry_web_assets::CACHE_CONTROL),
            ],
            asset.bytes,
        )
            .into_response(),
        None => UiError::not_found(format!("there is no asset named {file}")).into_response(),
    }
}
