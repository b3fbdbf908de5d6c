//! Browser sessions: an in-memory store (one node), the `postern_session` cookie, and the
//! per-session CSRF token that every POST must echo in its `csrf` form field.
//!
//! [`middleware`] runs before every handler: it finds or creates the session, puts a
//! [`Session`] into the request's extensions, refuses a POST whose `csrf` field does not match
//! (403), and sets the cookie on responses for new sessions. Ids and tokens are 256 random bits.
//! Login rotates the id ([`SessionStore::login`]) so a session id seen before login is useless after.
//! A handler that redirects may leave a flash message ([`SessionStore::set_flash`]); the next
//! GET of that session takes it into [`Session::flash`].

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::AppError;

pub const COOKIE_NAME: &str = "postern_session";
/// Largest form body the panel accepts.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// Sessions kept before expired ones are swept on insert.
const SWEEP_ABOVE: usize = 1024;

/// The logged-in admin of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionAdmin {
    pub username: String,
    pub superadmin: bool,
}

/// A snapshot of the current request's session.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub csrf: String,
    pub admin: Option<SessionAdmin>,
    /// A message left by the previous request (after a redirect), shown once by a GET.
    pub flash: Option<String>,
}

struct Entry {
    csrf: String,
    admin: Option<SessionAdmin>,
    last_seen: Instant,
    flash: Option<String>,
}

/// In-memory sessions. Sessions do not survive a restart and are not shared between nodes.
pub struct SessionStore {
    ttl: Duration,
    sessions: Mutex<HashMap<String, Entry>>,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SessionStore {
    pub fn new(ttl: Duration) -> Self {
        SessionStore {
            ttl,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn insert(&self, admin: Option<SessionAdmin>) -> Session {
        let id = random_token();
        let csrf = random_token();
        let mut map = lock(&self.sessions);
        if map.len() > SWEEP_ABOVE {
            let ttl = self.ttl;
            map.retain(|_, e| e.last_seen.elapsed() < ttl);
        }
        map.insert(
            id.clone(),
            Entry {
                csrf: csrf.clone(),
                admin: admin.clone(),
                last_seen: Instant::now(),
                flash: None,
            },
        );
        Session {
            id,
            csrf,
            admin,
            flash: None,
        }
    }

    /// A new anonymous session.
    pub fn create(&self) -> Session {
        self.insert(None)
    }

    /// The live session `id`, touched; `None` if unknown or expired.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = lock(&self.sessions);
        let live = map
            .get(id)
            .is_some_and(|e| e.last_seen.elapsed() < self.ttl);
        if !live {
            map.remove(id);
            return None;
        }
        let e = map.get_mut(id)?;
        e.last_seen = Instant::now();
        Some(Session {
            id: id.to_string(),
            csrf: e.csrf.clone(),
            admin: e.admin.clone(),
            flash: None,
        })
    }

    /// Leave `msg` for the next page session `id` shows (see [`Session::flash`]).
    pub fn set_flash(&self, id: &str, msg: impl Into<String>) {
        if let Some(e) = lock(&self.sessions).get_mut(id) {
            e.flash = Some(msg.into());
        }
    }

    fn take_flash(&self, id: &str) -> Option<String> {
        lock(&self.sessions)
            .get_mut(id)
            .and_then(|e| e.flash.take())
    }

    /// End session `old` and start a logged-in one with a fresh id and CSRF token.
    pub fn login(&self, old: &str, admin: SessionAdmin) -> Session {
        lock(&self.sessions).remove(old);
        self.insert(Some(admin))
    }

    pub fn remove(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }

    /// Whether `client` has failed `max` logins within `window`.
    pub fn login_locked(&self, client: &str, max: u32, window: Duration) -> bool {
        let mut f = lock(&self.failures);
        match f.get(client) {
            Some((n, since)) if since.elapsed() < window => *n >= max,
            Some(_) => {
                f.remove(client);
                false
            }
            None => false,
        }
    }

    pub fn login_failed(&self, client: &str, window: Duration) {
        let mut f = lock(&self.failures);
        if f.len() > SWEEP_ABOVE {
            f.retain(|_, (_, since)| since.elapsed() < window);
        }
        let e = f.entry(client.to_string()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= window {
            *e = (0, Instant::now());
        }
        e.0 = e.0.saturating_add(1);
    }

    pub fn login_succeeded(&self, client: &str) {
        lock(&self.failures).remove(client);
    }
}

/// The `Set-Cookie` value for session `id` (`max_age` 0 deletes the cookie).
pub fn cookie(id: &str, secure: bool, delete: bool) -> HeaderValue {
    let mut c = format!("{COOKIE_NAME}={id}; HttpOnly; SameSite=Strict; Path=/");
    if secure {
        c.push_str("; Secure");
    }
    if delete {
        c.push_str("; Max-Age=0");
    }
    // Ids are base64url, so the value is always a valid header.
    HeaderValue::from_str(&c)
        .unwrap_or_else(|_| HeaderValue::from_static("postern_session=; Max-Age=0"))
}

fn session_id_from(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_string())
}

/// The value of field `name` in an `application/x-www-form-urlencoded` body.
/// Tokens are base64url, which browsers never percent-encode, so no decoding is needed.
fn form_field<'a>(body: &'a [u8], name: &str) -> Option<&'a [u8]> {
    body.split(|b| *b == b'&').find_map(|kv| {
        let mut it = kv.splitn(2, |b| *b == b'=');
        let k = it.next()?;
        (k == name.as_bytes()).then(|| it.next().unwrap_or(b""))
    })
}

/// Session lookup, CSRF check on POST, and the cookie for new sessions.
pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let store = &state.sessions;
    let (session, is_new) = match session_id_from(req.headers()).and_then(|id| store.get(&id)) {
        Some(s) => (s, false),
        None => (store.create(), true),
    };

    let req = if req.method() == Method::POST {
        let (parts, body) = req.into_parts();
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let bytes = match to_bytes(body, MAX_FORM_BYTES).await {
            Ok(b) => b,
            Err(_) => return AppError::BadRequest("form too large").into_response(),
        };
        let sent = if is_form {
            form_field(&bytes, "csrf")
        } else {
            None
        };
        let ok = sent.is_some_and(|t| bool::from(t.ct_eq(session.csrf.as_bytes())));
        if !ok {
            return AppError::Csrf.into_response();
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        req
    };

    let mut req = req;
    let mut session = session;
    if req.method() == Method::GET && !is_new {
        session.flash = store.take_flash(&session.id);
    }
    let id = session.id.clone();
    req.extensions_mut().insert(session);
    let mut resp = next.run(req).await;
    let handler_set_cookie = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.as_bytes().starts_with(COOKIE_NAME.as_bytes()));
    if is_new && !handler_set_cookie {
        resp.headers_mut().append(
            header::SET_COOKIE,
            cookie(&id, state.config.cookie_secure, false),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_form_fields() {
        assert_eq!(form_field(b"a=1&csrf=xyz&b=2", "csrf"), Some(&b"xyz"[..]));
        assert_eq!(form_field(b"csrfx=1&csrf", "csrf"), Some(&b""[..]));
        assert_eq!(form_field(b"a=1", "csrf"), None);
    }

    #[test]
    fn login_rotates_and_expires() {
        let s = SessionStore::new(Duration::from_secs(60));
        let anon = s.create();
        let admin = SessionAdmin {
            username: "a@b.cd".into(),
            superadmin: true,
        };
        let logged = s.login(&anon.id, admin.clone());
        assert_ne!(logged.id, anon.id);
        assert_ne!(logged.csrf, anon.csrf);
        assert!(s.get(&anon.id).is_none());
        assert_eq!(s.get(&logged.id).and_then(|x| x.admin), Some(admin));
        let short = SessionStore::new(Duration::ZERO);
        let gone = short.create();
        assert!(short.get(&gone.id).is_none());
    }

    #[test]
    fn lockout_after_failures() {
        let s = SessionStore::new(Duration::from_secs(60));
        let w = Duration::from_secs(60);
        for _ in 0..3 {
            assert!(!s.login_locked("1.2.3.4", 3, w));
            s.login_failed("1.2.3.4", w);
        }
        assert!(s.login_locked("1.2.3.4", 3, w));
        assert!(!s.login_locked("5.6.7.8", 3, w));
        s.login_succeeded("1.2.3.4");
        assert!(!s.login_locked("1.2.3.4", 3, w));
    }
}
