//! `basic_auth_users`: HTTP basic authentication against bcrypt hashes,
//! and the configured response headers.
//!
//! bcrypt is slow on purpose (tens of milliseconds at cost 10), so, as in
//! the exporter-toolkit, a (user, password) pair that verified is cached
//! and later requests with it cost one SHA-256. Verifications that are not
//! cached run one at a time on the blocking pool, so a flood of wrong
//! passwords queues behind itself instead of taking every core, while
//! scrapes with the right password are answered from the cache. An unknown
//! user is checked against a configured hash too, so its answer takes as
//! long as a wrong password's.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
};

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderName, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use tokio::sync::Semaphore;

use super::WebConfigError;

/// Verified pairs kept; beyond it the cache starts over.
const CACHE_CAPACITY: usize = 256;

/// Users and their bcrypt hashes, with the cache of verified pairs.
#[derive(Debug)]
pub struct BasicAuth {
    users: HashMap<String, String>,
    /// Hash checked for unknown users (a configured one: same cost).
    decoy: String,
    verified: Mutex<HashSet<[u8; 32]>>,
    bcrypt: Semaphore,
}

impl BasicAuth {
    /// Checks that every password is a bcrypt hash.
    pub fn new(users: BTreeMap<String, String>) -> Result<Self, WebConfigError> {
        for (user, hash) in &users {
            if user.is_empty() || user.contains(':') {
                return Err(WebConfigError::UserName);
            }
            hash.parse::<bcrypt::HashParts>()
                .map_err(|source| WebConfigError::Hash {
                    user: user.clone(),
                    source,
                })?;
        }
        let decoy = users.values().next().cloned().unwrap_or_default();
        Ok(Self {
            users: users.into_iter().collect(),
            decoy,
            verified: Mutex::new(HashSet::new()),
            bcrypt: Semaphore::new(1),
        })
    }

    /// The configured user names, sorted.
    pub fn users(&self) -> Vec<&str> {
        let mut users: Vec<&str> = self.users.keys().map(String::as_str).collect();
        users.sort_unstable();
        users
    }

    /// Whether an `Authorization` header names a user and its password.
    pub async fn check(self: &Arc<Self>, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return false;
        };
        let key = cache_key(&user, &password);
        if self.cache().contains(&key) {
            return true;
        }
        let Ok(_turn) = self.bcrypt.acquire().await else {
            return false;
        };
        // A request queued behind the same pair's verification.
        if self.cache().contains(&key) {
            return true;
        }
        let known = self.users.contains_key(&user);
        let auth = self.clone();
        let matched = tokio::task::spawn_blocking(move || {
            let hash = auth.users.get(&user).unwrap_or(&auth.decoy);
            bcrypt::verify(&password, hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let ok = known && matched;
        if ok {
            let mut cache = self.cache();
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(key);
        }
        ok
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// User and password of a `Basic` authorization.
fn credentials(header: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// SHA-256 of the pair, so the cache holds no password.
fn cache_key(user: &str, password: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&(user.len() as u64).to_le_bytes());
    ctx.update(user.as_bytes());
    ctx.update(password);
    let mut key = [0; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// `router` answering 401 to requests without valid credentials.
pub(super) fn require(router: Router, auth: Arc<BasicAuth>) -> Router {
    router.layer(middleware::from_fn_with_state(auth, authenticate))
}

async fn authenticate(
    State(auth): State<Arc<BasicAuth>>,
    request: Request,
    next: Next,
) -> Response {
    if auth
        .check(request.headers().get(header::AUTHORIZATION))
        .await
    {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"Planet\"")],
        "Unauthorized\n",
    )
        .into_response()
}

/// `router` adding `headers` to every response.
pub(super) fn with_headers(router: Router, headers: Arc<Vec<(HeaderName, HeaderValue)>>) -> Router {
    router.layer(middleware::map_response_with_state(
        headers,
        |State(headers): State<Arc<Vec<(HeaderName, HeaderValue)>>>, mut response: Response| async move {
            for (name, value) in headers.iter() {
                response.headers_mut().insert(name.clone(), value.clone());
            }
            response
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[tokio::test]
    async fn verified_pairs_are_cached_and_failures_are_not() {
        let hash = bcrypt::hash("pw:with:colons", 4).unwrap();
        let auth = Arc::new(BasicAuth::new([("alice".to_owned(), hash)].into()).unwrap());
        assert!(!auth.check(Some(&basic("alice", "nope"))).await);
        assert!(auth.cache().is_empty(), "a failure is not cached");
        assert!(auth.check(Some(&basic("alice", "pw:with:colons"))).await);
        assert!(
            auth.cache()
                .contains(&cache_key("alice", b"pw:with:colons"))
        );
        assert!(auth.check(Some(&basic("alice", "pw:with:colons"))).await);
        assert_eq!(auth.cache().len(), 1);
        // The decoy hash is alice's: her password under another name fails.
        assert!(!auth.check(Some(&basic("mallory", "pw:with:colons"))).await);
    }

    #[test]
    fn credentials_are_parsed_strictly() {
        let header = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            credentials(&basic("u", "p:q")),
            Some(("u".to_owned(), b"p:q".to_vec()))
        );
        assert_eq!(
            credentials(&header("basic dTpw")),
            Some(("u".to_owned(), b"p".to_vec()))
        );
        for bad in ["Basic", "Basic dTpw!", "Digest dTpw", "Basic dXNlcg=="] {
            assert_eq!(credentials(&header(bad)), None, "{bad}");
        }
    }
}
