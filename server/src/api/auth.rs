//! Who is asking: the bearer token of a request, as a [`Caller`], and what
//! their role lets them do.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;

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
        let Some(token) = bearer(parts) else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "no token: send `Authorization: Bearer <token>`"));
        };
        let users = state.users.current().map_err(|e| ApiError::internal(format!("cannot read the users: {e}")))?;
        let user = users.authenticate(token).cloned();
        match user {
            Some(user) => {
                // For the audit log, which writes after the handler.
                if let Some(slot) = parts.extensions.get::<super::AuditSlot>() {
                    if let Ok(mut s) = slot.0.lock() {
                        *s = Some(user.name.clone());
                    }
                }
                Ok(Caller { user })
            }
            None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "the token is not valid (unknown, or rotated)")),
        }
    }
}

