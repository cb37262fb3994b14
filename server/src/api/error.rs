//! How the API says no: a status and a message, as `{"error": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answer. Its message is for the person who sent the request; it
/// never holds a secret value.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// More for a program to read, under its own key (a preflight's report
    /// under `preflight`).
    pub detail: Option<(&'static str, serde_json::Value)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), detail: None }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut doc = serde_json::json!({ "error": self.message });
        if let Some((key, value)) = self.detail {
            doc[key] = value;
        }
        let mut r = (self.status, Json(doc)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl From<stackpipe_runtime::state::StateError> for ApiError {
    fn from(e: stackpipe_runtime::state::StateError) -> ApiError {
        ApiError::internal(format!("state: {e}"))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON request body, refused as `{"error": ...}` like every other
/// refusal: 400 when it is not the JSON the endpoint takes (unknown fields
/// included), 413 when it is larger than the server takes.
pub struct Body<T>(pub T);

async fn body_bytes<S: Send + Sync>(req: axum::extract::Request, state: &S) -> Result<axum::body::Bytes, ApiError> {
    use axum::extract::FromRequest;
    axum::body::Bytes::from_request(req, state).await.map_err(|e| ApiError::new(e.status(), e.body_text()))
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("the request body is not what this endpoint takes: {e}")))
}

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        parse(&bytes).map(Body)
    }
}

/// Path parameters, refused as `{"error": ...}` (400) when they do not decode.
pub struct Path<T>(pub T);

/// A query string, refused as `{"error": ...}` (400) when it is not what
/// the endpoint takes (unknown parameters included).
pub struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(Path(p.0)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(Query(q.0)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}
