//! The API's one catalogue of errors: `{"code": "...", "message": "...", "field": "..."}`.
//! A 5xx body says nothing internal; the log has the cause.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use missive_core::ErrorCode;
use serde::Serialize;

/// An error: its code from the catalogue (docs/errors.md), a message for people, and where
/// the problem is when the request says it (`field`, `at`), with a hint when there is one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    #[schema(ignore)]
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// The field of the request the error is about (`limit`, `steps.2.condition`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Where in a submitted expression the problem is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<At>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// A line and column (from 1) in a submitted expression or template.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[schema(as = ErrorPosition)]
pub struct At {
    pub line: u32,
    pub column: u32,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            at: None,
            hint: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        let f = field.into();
        if !f.is_empty() {
            self.field = Some(f);
        }
        self
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// Logs the cause and answers 500 without detail.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error; see the server log",
        )
    }

    /// Logs the cause and answers 503: the client should retry.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request not durable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the events could not be made durable; retry with the same messageIds",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(&self)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"missive\""),
            );
        }
        res
    }
}

impl From<missive_segment::SegmentError> for ApiError {
    fn from(e: missive_segment::SegmentError) -> Self {
        let (code, message, line, column, hint) = match e {
            missive_segment::SegmentError::Parse(p) => {
                (ErrorCode::SegmentParseError, p.message, p.line, p.column, p.hint)
            }
            missive_segment::SegmentError::Type(t) => {
                (ErrorCode::SegmentTypeError, t.message, t.line, t.column, t.hint)
            }
        };
        let mut err = ApiError::bad_request(code, message);
        err.at = Some(At { line, column });
        err.hint = hint;
        err
    }
}

impl From<missive_store::StoreError> for ApiError {
    fn from(e: missive_store::StoreError) -> Self {
        match e {
            // Cluster mode: a write only the holder of a lease may make (the sending side's
            // journeys, broadcasts and outbox), asked of a node that does not hold it now.
            missive_store::StoreError::Fenced(cause) => {
                tracing::warn!(error = %cause, "a write refused: this node does not hold the lease");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "this cluster node does not run the sending side now: ask the node that holds the sending lease (`missive cluster status` names it), or retry",
                )
            }
            e => ApiError::internal(&e),
        }
    }
}

/// A JSON request body, whatever its `Content-Type` (curl's `-d` sends a form type), with
/// errors in the API's catalogue.
pub struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        // Any content type is read as JSON, so a browser form on another site must not get
        // here: browsers mark cross-site requests, API clients do not.
        let headers = req.headers();
        let cross_site = headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() != b"same-origin" && v.as_bytes() != b"none");
        if cross_site || headers.contains_key(axum::http::header::ORIGIN) {
            return Err(ApiError::forbidden(
                "the management API does not take requests from web pages",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), ErrorCode::InvalidBody, e.body_text()))?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::bad_request(
                ErrorCode::InvalidJson,
                format!("body is not the expected JSON: {e}"),
            )
        })
    }
}

/// Query parameters, with errors in the API's catalogue (axum's own answer is plain text).
pub struct Query<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidValue, e.body_text()))
    }
}

/// Path parameters, with errors in the API's catalogue (axum's own answer is plain text).
pub struct Path<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(Path(p.0)),
            // A route whose parameters do not fit its handler: a bug here, not the client's.
            Err(e) if e.status().is_server_error() => Err(ApiError::internal(&e.body_text())),
            Err(e) => Err(ApiError::bad_request(ErrorCode::InvalidValue, e.body_text())),
        }
    }
}

/// A request body as bytes, with errors in the API's catalogue (axum's own answer to a body
/// over the limit is plain text).
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| ApiError::new(e.status(), ErrorCode::InvalidBody, e.body_text()))
    }
}
