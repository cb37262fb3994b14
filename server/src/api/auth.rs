//! Who is asking: the bearer token of a request, or its session cookie
//! (see `session`), as a [`Caller`], and what their role lets them do.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};

use super::error::ApiError;
use super::AppState;
use crate::users::{Role, User};

/// The authenticated user of a request. Extracting it answers 401 when the
/// request has no token, or one that is nobody's.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
}

impl Caller {
    /// Whether the caller may do what `needed` may on `pipeline` (None: on
    /// the server as a whole); 403 naming the role needed if not.
    pub fn require(&self, needed: Role, pipeline: Option<&str>) -> Result<(), ApiError> {
        if self.user.may(needed, pipeline) {
            return Ok(());
        }
        let on = match pipeline {
            Some(p) => format!(" on pipeline `{p}`"),
            None if !self.user.pipelines.is_empty() => " on the whole server (your role is limited to some pipelines)".to_string(),
            None => String::new(),
        };
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this needs the role {needed}{on}; user `{}` has the role {}", self.user.name, self.user.role),
        ))
    }

    /// Who decides a gate: the user with their role.
    pub fn decider(&self) -> stackpipe_runtime::run::Decider {
        stackpipe_runtime::run::Decider { user: self.user.name.clone(), role: Some(self.user.role) }
    }

    /// Whether the caller may see pipeline `p` at all.
    pub fn sees(&self, pipeline: &str) -> bool {
        self.user.covers(pipeline)
    }
}

/// The token of `parts`: `Authorization: Bearer TOKEN`.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Caller, ApiError> {
        let users = state.users.current().map_err(|e| ApiError::internal(format!("cannot read the users: {e}")))?;
        let user = match (bearer(parts), super::session::cookie(&parts.headers)) {
            (Some(token), _) => users
                .authenticate(token)
                .cloned()
                .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "the token is not valid (unknown, or rotated)"))?,
            (None, Some(cookie)) => {
                let gone = || ApiError::new(StatusCode::UNAUTHORIZED, "the session has ended: log in again");
                let (name, csrf, created_ms) = state.sessions.user(cookie).ok_or_else(gone)?;
                // A user removed, or whose token was made anew since, is logged out.
                let user = users.list().iter().find(|u| u.name == name && u.token_ms <= created_ms).cloned().ok_or_else(gone)?;
                // A request a page of another site makes carries the cookie
                // but cannot know the session's CSRF token.
                let mutating = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
                let presented = parts.headers.get(super::session::CSRF_HEADER).and_then(|v| v.to_str().ok());
                if mutating && !super::session::csrf_matches(presented, &csrf) {
                    return Err(ApiError::new(StatusCode::FORBIDDEN, "missing or wrong CSRF token (X-CSRF-Token)"));
                }
                user
            }
            (None, None) => {
                return Err(ApiError::new(StatusCode::UNAUTHORIZED, "no token: send `Authorization: Bearer <token>`"));
            }
        };
        // For the audit log, which writes after the handler.
        if let Some(slot) = parts.extensions.get::<super::AuditSlot>() {
            if let Ok(mut s) = slot.0.lock() {
                *s = Some(user.name.clone());
            }
        }
        Ok(Caller { user })
    }
}

