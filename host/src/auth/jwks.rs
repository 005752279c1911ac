//! The identity provider's signing keys, from its JWKS endpoint: fetched at
//! start and again when the answer's `Cache-Control: max-age` runs out
//! (default 5 minutes), and at once (at most every 10 s) when a token names a
//! key id we do not know, as after a key rotation. The last good key set
//! serves while the provider is down or answers garbage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::{Mutex, RwLock};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a key set is kept when the answer says nothing.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// The shortest and longest a key set is kept, whatever the answer says.
const MAX_AGE_BOUNDS: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(86_400));
/// An unknown key id refetches at most this often.
pub const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(10);
/// A failed fetch is retried after this long (or the max-age, if shorter).
const RETRY: Duration = Duration::from_secs(10);
/// A fetch that takes longer has failed.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest key set document read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// A key the provider signs with, and the algorithm it is for.
pub struct Key {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    /// Keys published without a `kid`.
    anonymous: Vec<Arc<Key>>,
}

pub struct Jwks {
    url: String,
    http: reqwest::Client,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// When an unknown key id last made us fetch.
    last_forced: Mutex<Option<Instant>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

impl Jwks {
    pub fn new(url: String) -> Jwks {
        Jwks {
            url,
            http: reqwest::Client::new(),
            keys: RwLock::new(None),
            last_forced: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// A key set has been fetched at least once.
    pub fn is_ready(&self) -> bool {
        self.keys.read().is_some()
    }

    /// The keys a token signed with `algorithm` (and `kid`, if it names one)
    /// may be checked against; fetches again when `kid` is unknown.
    pub async fn keys_for(&self, kid: Option<&str>, algorithm: Algorithm) -> Vec<Arc<Key>> {
        let found = self.lookup(kid, algorithm);
        if !found.is_empty() || kid.is_none() {
            return found;
        }
        {
            let mut last = self.last_forced.lock();
            if last.is_some_and(|t| t.elapsed() < UNKNOWN_KID_REFETCH) {
                return Vec::new();
            }
            *last = Some(Instant::now());
        }
        tracing::info!(
            kid,
            "a token names an unknown key id; fetching the key set again"
        );
        let _ = self.refresh().await;
        self.lookup(kid, algorithm)
    }

    fn lookup(&self, kid: Option<&str>, algorithm: Algorithm) -> Vec<Arc<Key>> {
        let Some(set) = self.keys.read().clone() else {
            return Vec::new();
        };
        let fits = |k: &&Arc<Key>| k.algorithm == algorithm;
        match kid {
            Some(kid) => set
                .by_kid
                .get(kid)
                .filter(fits)
                .cloned()
                .into_iter()
                .collect(),
            None => set
                .by_kid
                .values()
                .chain(&set.anonymous)
                .filter(fits)
                .cloned()
                .collect(),
        }
    }

    /// Fetches the key set; on success it replaces the one in use. Returns
    /// how long to keep it.
    async fn refresh(&self) -> Result<Duration, String> {
        let _one = self.fetching.lock().await;
        match self.fetch().await {
            Ok((set, max_age)) => {
                tracing::info!(
                    url = %self.url,
                    keys = set.by_kid.len() + set.anonymous.len(),
                    "fetched the identity provider's keys"
                );
                *self.keys.write() = Some(Arc::new(set));
                Ok(max_age)
            }
            Err(e) => {
                let kept = if self.is_ready() {
                    "keeping the last good key set"
                } else {
                    "no key set yet: user tokens are refused"
                };
                tracing::warn!(url = %self.url, error = %e, "fetching the JWKS failed; {kept}");
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<(KeySet, Duration), String> {
        let response = tokio::time::timeout(FETCH_TIMEOUT, self.http.get(&self.url).send())
            .await
            .map_err(|_| "no answer in time".to_owned())?
            .map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let max_age = max_age(response.headers());
        let body = tokio::time::timeout(FETCH_TIMEOUT, response.bytes())
            .await
            .map_err(|_| "the body did not arrive in time".to_owned())?
            .map_err(|e| format!("reading the body failed: {e}"))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "the key set is larger than {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        Ok((parse(&body)?, max_age))
    }

    /// Keeps the key set fresh until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let wait = match self.refresh().await {
                Ok(max_age) => max_age,
                Err(_) => RETRY,
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// `Cache-Control: max-age=N`, within bounds; the default without one.
fn max_age(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get_all(reqwest::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|d| d.trim().strip_prefix("max-age=")?.parse::<u64>().ok())
        .map_or(DEFAULT_MAX_AGE, |s| {
            Duration::from_secs(s).clamp(MAX_AGE_BOUNDS.0, MAX_AGE_BOUNDS.1)
        })
}

/// A JWK set document; keys we cannot use (other types, other curves,
/// symmetric keys, broken ones) are skipped with a log line.
fn parse(body: &[u8]) -> Result<KeySet, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let doc: Document = serde_json::from_slice(body).map_err(|e| format!("not a JWK set: {e}"))?;
    let mut set = KeySet::default();
    for raw in doc.keys {
        let kid = raw.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        let key = serde_json::from_value::<Jwk>(raw)
            .map_err(|e| e.to_string())
            .and_then(|jwk| usable(&jwk));
        match key {
            Ok(key) => match kid {
                Some(kid) => {
                    set.by_kid.insert(kid, Arc::new(key));
                }
                None => set.anonymous.push(Arc::new(key)),
            },
            Err(why) => tracing::warn!(?kid, why, "skipping a key of the JWK set"),
        }
    }
    if set.by_kid.is_empty() && set.anonymous.is_empty() {
        return Err("the JWK set has no usable key (RS256, ES256 or EdDSA)".to_owned());
    }
    Ok(set)
}

/// The algorithm a public key is for: RSA keys sign RS256 (unless the key
/// says otherwise), P-256 keys ES256, Ed25519 keys EdDSA.
fn usable(jwk: &Jwk) -> Result<Key, String> {
    let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
            if p.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        (AlgorithmParameters::OctetKeyPair(p), None | Some(KeyAlgorithm::EdDSA))
            if p.curve == EllipticCurve::Ed25519 =>
        {
            Algorithm::EdDSA
        }
        _ => return Err("not an RS256, ES256 or EdDSA public key".to_owned()),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    Ok(Key { key, algorithm })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_follows_cache_control_within_bounds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(max_age(&h), DEFAULT_MAX_AGE);
        h.insert("cache-control", "public, max-age=60".parse().unwrap());
        assert_eq!(max_age(&h), Duration::from_secs(60));
        h.insert("cache-control", "max-age=1".parse().unwrap());
        assert_eq!(max_age(&h), Duration::from_secs(10));
    }

    #[test]
    fn rsa_p256_and_ed25519_keys_are_used_for_their_algorithms() {
        // RFC 7517 A.1's RSA key, RFC 8037 A.2's Ed25519 key, and a P-256 key.
        let doc = br#"{"keys": [
            {"kty": "RSA", "kid": "2011-04-29", "e": "AQAB",
             "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed",
             "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "EC", "crv": "P-256", "kid": "ec",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}"#;
        let set = parse(doc).unwrap();
        let alg = |kid: &str| set.by_kid[kid].algorithm;
        assert_eq!(alg("2011-04-29"), Algorithm::RS256);
        assert_eq!(alg("ed"), Algorithm::EdDSA);
        assert_eq!(alg("ec"), Algorithm::ES256);
    }

    #[test]
    fn garbage_and_unusable_key_sets_are_refused() {
        assert!(parse(b"<html>").is_err());
        assert!(parse(br#"{"keys": []}"#).is_err());
        let symmetric = br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}"#;
        assert!(
            parse(symmetric).is_err(),
            "an HMAC secret is never a provider key"
        );
    }
}
