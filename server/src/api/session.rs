//! Browser sessions (for the console): a token is exchanged once, at
//! `POST /api/v1/session`, for a session cookie (HttpOnly, SameSite=Strict,
//! Secure under TLS) and a CSRF token that every mutating request made
//! with the cookie must carry in `X-CSRF-Token`. A session ends at logout,
//! after [`IDLE`] without a request, when its user is removed, or when the
//! user's token is rotated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::Body;
use super::{ApiError, ApiResult, AppState, Caller};

/// The session cookie's name.
pub const COOKIE: &str = "stackpipe_session";
/// The header that carries a session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts without a request.
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Sessions at most (the oldest idle one goes first).
const KEPT: usize = 10_000;

struct Session {
    user: String,
    csrf: String,
    /// When it was made (ms since the epoch): a token made after it ends it.
    created_ms: u64,
    seen: Instant,
}

/// The server's sessions, by the SHA-256 of their cookie (never the cookie
/// itself: a memory dump does not log anyone in). They live in memory: a
/// server started again asks everyone to log in again.
#[derive(Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_token(prefix: &str) -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

fn hash(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

/// The session cookie of a request, if it has one.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

impl Sessions {
    fn open(&self, user: &str) -> Result<(String, String), ApiError> {
        let cookie = random_token("sps_")?;
        let csrf = random_token("")?;
        let mut sessions = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.seen.elapsed() < IDLE);
        if sessions.len() >= KEPT {
            if let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| *k) {
                sessions.remove(&oldest);
            }
        }
        let session = Session {
            user: user.to_string(),
            csrf: csrf.clone(),
            created_ms: stackpipe_runtime::state::now_ms(),
            seen: Instant::now(),
        };
        sessions.insert(hash(&cookie), session);
        Ok((cookie, csrf))
    }

    /// The user of session `cookie` and its CSRF token, if it is open (it
    /// is seen now).
    pub fn user(&self, cookie: &str) -> Option<(String, String, u64)> {
        let mut sessions = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        let key = hash(cookie);
        let s = sessions.get_mut(&key)?;
        if s.seen.elapsed() >= IDLE {
            sessions.remove(&key);
            return None;
        }
        s.seen = Instant::now();
        Some((s.user.clone(), s.csrf.clone(), s.created_ms))
    }

    fn close(&self, cookie: &str) -> bool {
        self.by_hash.lock().unwrap_or_else(|p| p.into_inner()).remove(&hash(cookie)).is_some()
    }
}

/// Whether `presented` is the session's CSRF token, compared in constant time.
pub fn csrf_matches(presented: Option<&str>, expected: &str) -> bool {
    presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_bytes())))
}

/// A token to exchange for a session.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[schema(max_length = 256)]
    pub token: String,
}

/// Who a session is of, and the CSRF token its mutating requests carry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    pub user: String,
    pub role: String,
    /// The pipelines the role is limited to (empty: every one).
    pub pipelines: Vec<String>,
    /// Send it as `X-CSRF-Token` with every request other than a GET.
    pub csrf: String,
}

fn session_cookie(value: &str, tls: bool, max_age: Option<u64>) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    let age = max_age.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}"))
        .unwrap_or_else(|_| HeaderValue::from_static("stackpipe_session=; Path=/; Max-Age=0"))
}

/// Logs in: the token (as `stackpipe user add` printed it) for a session
/// cookie and its CSRF token.
#[utoipa::path(post, path = "/api/v1/session", security(()), request_body = Login, responses(
    (status = 200, body = SessionInfo), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody)))]
pub async fn login(
    State(state): State<Arc<AppState>>,
    slot: Option<axum::Extension<super::AuditSlot>>,
    Body(body): Body<Login>,
) -> ApiResult<Response> {
    let users = state.users.current().map_err(|e| ApiError::internal(format!("cannot read the users: {e}")))?;
    let Some(user) = users.authenticate(body.token.trim()).cloned() else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "the token is not valid (unknown, or rotated)"));
    };
    let (cookie, csrf) = state.sessions.open(&user.name)?;
    if let Some(axum::Extension(slot)) = slot {
        if let Ok(mut s) = slot.0.lock() {
            *s = Some(user.name.clone());
        }
    }
    let info = SessionInfo { user: user.name, role: user.role.to_string(), pipelines: user.pipelines, csrf };
    let mut r = Json(info).into_response();
    r.headers_mut().insert(header::SET_COOKIE, session_cookie(&cookie, state.tls, Some(IDLE.as_secs())));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// The session of the request's cookie (or token): its user and CSRF token.
#[utoipa::path(get, path = "/api/v1/session", responses(
    (status = 200, body = SessionInfo), (status = 401, body = super::ErrorBody)))]
pub async fn current(State(state): State<Arc<AppState>>, caller: Caller, headers: HeaderMap) -> ApiResult<Response> {
    let csrf = cookie(&headers).and_then(|c| state.sessions.user(c)).map(|(_, csrf, _)| csrf).unwrap_or_default();
    let u = caller.user;
    let mut r = Json(SessionInfo { user: u.name, role: u.role.to_string(), pipelines: u.pipelines, csrf }).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// Logs out: the session ends and its cookie is cleared.
#[utoipa::path(delete, path = "/api/v1/session", responses(
    (status = 200, body = Object), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)))]
pub async fn logout(State(state): State<Arc<AppState>>, _caller: Caller, headers: HeaderMap) -> ApiResult<Response> {
    let closed = cookie(&headers).is_some_and(|c| state.sessions.close(c));
    let mut r = Json(serde_json::json!({ "logged_out": closed })).into_response();
    r.headers_mut().insert(header::SET_COOKIE, session_cookie("", state.tls, Some(0)));
    Ok(r)
}
