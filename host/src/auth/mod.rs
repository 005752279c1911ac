//! Who is calling: user JWTs (issued by the chat backend or its identity
//! provider) and the admin key. Tokens are checked against an HS256 secret, a
//! PEM public key, or the provider's JWKS endpoint (`jwks`); audience,
//! issuer, `nbf`, leeway and the claim holding the user id are configurable.
//! Secrets that are not configured are generated once into the data directory.

pub mod jwks;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Config;
use jwks::Jwks;

/// Random bytes in a generated secret (hex-encoded on disk).
const GENERATED_SECRET_BYTES: usize = 32;
/// The shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

/// The claims presence mints (and reads when the user claim is `sub`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
}

/// What is read from a token whose user claim is `sub`.
#[derive(Deserialize)]
struct SubClaims {
    exp: u64,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
}

/// What is read from a token whose user claim has another name.
#[derive(Deserialize)]
struct OtherClaims {
    exp: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// The fields of a verified token presence uses.
struct Verified {
    exp: u64,
    user: Option<String>,
    name: Option<String>,
    username: Option<String>,
}

/// An authenticated end user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub name: Option<String>,
    pub username: Option<String>,
    /// The token's `exp`: a connection lives on past it (plus the leeway)
    /// only if the client renews its token.
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("invalid token")]
    Invalid,
}

/// Where the keys that sign user tokens come from.
enum Keys {
    /// An HS256 secret or a configured public key.
    Static {
        key: DecodingKey,
        algorithm: Algorithm,
    },
    /// The identity provider's key set.
    Jwks(Arc<Jwks>),
}

/// Verifies user tokens and the admin key.
pub struct Auth {
    keys: Keys,
    /// One per algorithm a token may be signed with.
    validations: Vec<(Algorithm, Validation)>,
    /// The claim holding the user's id.
    user_claim: String,
    /// Present only for HS256, where we can mint tokens too.
    encoding: Option<EncodingKey>,
    admin_key: String,
    metrics_token: Option<String>,
    leeway: Duration,
}

impl Auth {
    /// Reads or generates the secrets the config names.
    pub fn from_config(config: &Config) -> anyhow::Result<Auth> {
        let admin_key = match &config.admin_key {
            Some(k) => k.clone(),
            None => load_or_generate(&config.data_dir, "admin_key")?,
        };
        let algorithm = match config.jwt_algorithm.to_ascii_uppercase().as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "EDDSA" => Algorithm::EdDSA,
            other => bail!("unsupported jwt_algorithm {other:?}: use HS256, RS256, ES256 or EdDSA"),
        };
        let (keys, encoding) = match (&config.jwt_jwks_url, &config.jwt_public_key, algorithm) {
            (Some(url), None, _) => (Keys::Jwks(Arc::new(Jwks::new(url.clone()))), None),
            (Some(_), Some(_), _) => bail!("set jwt_jwks_url or jwt_public_key, not both"),
            (None, None, Algorithm::HS256) => {
                let secret = match &config.jwt_secret {
                    Some(s) => checked_secret(s, "PRESENCE_JWT_SECRET (jwt_secret)")?,
                    None => {
                        let path = config.data_dir.join("jwt_secret");
                        let s = load_or_generate(&config.data_dir, "jwt_secret")?;
                        checked_secret(&s, &format!("the secret in {}", path.display()))?
                    }
                };
                let key = DecodingKey::from_secret(secret.as_bytes());
                (
                    Keys::Static { key, algorithm },
                    Some(EncodingKey::from_secret(secret.as_bytes())),
                )
            }
            (None, Some(path), Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("reading jwt_public_key {}", path.display()))?;
                let key = match algorithm {
                    Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
                    Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                    _ => DecodingKey::from_ed_pem(&pem),
                }
                .with_context(|| format!("parsing {}", path.display()))?;
                (Keys::Static { key, algorithm }, None)
            }
            (None, None, _) => bail!("jwt_algorithm {algorithm:?} needs jwt_public_key"),
            (None, Some(_), _) => bail!("jwt_public_key needs jwt_algorithm RS256, ES256 or EdDSA"),
        };
        let algorithms = match &keys {
            Keys::Static { algorithm, .. } => vec![*algorithm],
            Keys::Jwks(_) => vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        };
        let validations = algorithms
            .into_iter()
            .map(|a| (a, validation(config, a)))
            .collect();
        if config
            .metrics_token
            .as_deref()
            .is_some_and(|t| t.len() < 16)
        {
            bail!("PRESENCE_METRICS_TOKEN (metrics_token) must be at least 16 characters");
        }
        if config.jwt_user_claim.is_empty() {
            bail!("PRESENCE_JWT_USER_CLAIM (jwt_user_claim) is empty");
        }
        Ok(Auth {
            keys,
            validations,
            user_claim: config.jwt_user_claim.clone(),
            encoding,
            admin_key,
            metrics_token: config.metrics_token.clone(),
            leeway: Duration::from_secs(config.jwt_leeway_secs),
        })
    }

    /// The provider's key set, when tokens are checked against one (its
    /// owner keeps it fresh with [`Jwks::run`]).
    pub fn jwks(&self) -> Option<Arc<Jwks>> {
        match &self.keys {
            Keys::Jwks(j) => Some(j.clone()),
            Keys::Static { .. } => None,
        }
    }

    /// False until the provider's key set has been fetched once.
    pub fn is_ready(&self) -> bool {
        match &self.keys {
            Keys::Jwks(j) => j.is_ready(),
            Keys::Static { .. } => true,
        }
    }

    /// Clock skew tolerated on `exp` and `nbf`.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    pub async fn verify_user(&self, token: &str) -> Result<User, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let validation = self
            .validations
            .iter()
            .find(|(a, _)| *a == header.alg)
            .map(|(_, v)| v)
            .ok_or(AuthError::Invalid)?;
        let verified = if self.user_claim == "sub" {
            let c: SubClaims = self.decode(token, &header, validation).await?;
            Verified {
                exp: c.exp,
                user: c.sub,
                name: c.name,
                username: c.preferred_username,
            }
        } else {
            let mut c: OtherClaims = self.decode(token, &header, validation).await?;
            let user = match c.rest.remove(&self.user_claim) {
                Some(serde_json::Value::String(s)) => Some(s),
                _ => None,
            };
            Verified {
                exp: c.exp,
                user,
                name: c.name,
                username: c.preferred_username,
            }
        };
        let id = verified
            .user
            .and_then(|s| s.parse().ok())
            .ok_or(AuthError::Invalid)?;
        let exp = i64::try_from(verified.exp).unwrap_or(i64::MAX);
        Ok(User {
            id,
            name: verified.name,
            username: verified.username,
            expires_at: DateTime::from_timestamp(exp, 0).unwrap_or(DateTime::<Utc>::MAX_UTC),
        })
    }

    /// Checks the signature (against the provider's keys for the token's
    /// `kid`, when there is a key set) and the claims.
    async fn decode<C: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        header: &Header,
        validation: &Validation,
    ) -> Result<C, AuthError> {
        match &self.keys {
            Keys::Static { key, .. } => jsonwebtoken::decode::<C>(token, key, validation)
                .map(|d| d.claims)
                .map_err(|_| AuthError::Invalid),
            Keys::Jwks(jwks) => jwks
                .keys_for(header.kid.as_deref(), header.alg)
                .await
                .iter()
                .find_map(|k| jsonwebtoken::decode::<C>(token, &k.key, validation).ok())
                .map(|d| d.claims)
                .ok_or(AuthError::Invalid),
        }
    }

    pub fn verify_admin(&self, key: &str) -> Result<(), AuthError> {
        if constant_time_eq(key.as_bytes(), self.admin_key.as_bytes()) {
            Ok(())
        } else {
            Err(AuthError::Invalid)
        }
    }

    /// `/metrics` opens to the admin key or the read-only metrics token.
    pub fn verify_metrics_reader(&self, key: &str) -> Result<(), AuthError> {
        let token = self.metrics_token.as_deref();
        if token.is_some_and(|t| constant_time_eq(key.as_bytes(), t.as_bytes())) {
            return Ok(());
        }
        self.verify_admin(key)
    }

    /// Mints a user token; only possible with an HS256 secret.
    pub fn mint(
        &self,
        user: Uuid,
        name: Option<String>,
        ttl: std::time::Duration,
    ) -> anyhow::Result<String> {
        let Some(key) = &self.encoding else {
            bail!("tokens can only be minted with an HS256 secret");
        };
        let exp = jsonwebtoken::get_current_timestamp() + ttl.as_secs();
        let claims = Claims {
            sub: user,
            exp,
            preferred_username: None,
            name,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            key,
        )?)
    }
}

/// What a token signed with `algorithm` must satisfy: `exp` (and `nbf` when
/// present) within the leeway; `aud` one of the configured audiences and
/// `iss` the configured issuer, each required when configured and accepted
/// as it is when not.
fn validation(config: &Config, algorithm: Algorithm) -> Validation {
    let mut v = Validation::new(algorithm);
    let mut required = vec!["exp"];
    v.leeway = config.jwt_leeway_secs;
    v.validate_nbf = true;
    if config.jwt_audience.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&config.jwt_audience);
        required.push("aud");
    }
    if let Some(issuer) = &config.jwt_issuer {
        v.set_issuer(&[issuer]);
        required.push("iss");
    }
    v.set_required_spec_claims(&required);
    v
}

/// `secret` if it is long enough for HS256; else an error naming `source`.
fn checked_secret(secret: &str, source: &str) -> anyhow::Result<String> {
    if secret.len() < MIN_SECRET_BYTES {
        bail!(
            "{source} is {} bytes; an HS256 secret needs at least {MIN_SECRET_BYTES} \
             (generate one with `openssl rand -hex 32`)",
            secret.len()
        );
    }
    Ok(secret.to_owned())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads `<dir>/<name>`, or creates it (mode 0600) with a fresh random secret.
fn load_or_generate(dir: &Path, name: &str) -> anyhow::Result<String> {
    let path: PathBuf = dir.join(name);
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_owned();
        if !s.is_empty() {
            return Ok(s);
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut bytes = [0u8; GENERATED_SECRET_BYTES];
    rand::Rng::fill(&mut rand::thread_rng(), &mut bytes[..]);
    let secret = hex::encode(bytes);
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated {name}");
    Ok(secret)
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn config(dir: &Path) -> Config {
        Config {
            data_dir: dir.to_owned(),
            ..Config::default()
        }
    }

    fn with_secret(dir: &Path) -> Config {
        Config {
            jwt_secret: Some(SECRET.into()),
            ..config(dir)
        }
    }

    fn now() -> i64 {
        Utc::now().timestamp()
    }

    fn sign(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn generated_secrets_are_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = Auth::from_config(&config(dir.path())).unwrap();
        let token = a
            .mint(Uuid::new_v4(), Some("John".into()), Duration::from_secs(60))
            .unwrap();
        let b = Auth::from_config(&config(dir.path())).unwrap();
        assert_eq!(
            b.verify_user(&token).await.unwrap().name.as_deref(),
            Some("John")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("jwt_secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn empty_and_short_secrets_are_refused_naming_where_they_come_from() {
        let dir = tempfile::tempdir().unwrap();
        for secret in ["", "short", &"x".repeat(31)] {
            let err = Auth::from_config(&Config {
                jwt_secret: Some(secret.into()),
                ..config(dir.path())
            })
            .err()
            .expect("refused");
            assert!(err.to_string().contains("PRESENCE_JWT_SECRET"), "{err}");
        }
        std::fs::write(dir.path().join("jwt_secret"), "too-short").unwrap();
        let err = Auth::from_config(&config(dir.path()))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("jwt_secret"), "{err}");
    }

    #[tokio::test]
    async fn forged_and_expired_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Auth::from_config(&with_secret(dir.path())).unwrap();
        let b = Auth::from_config(&Config {
            jwt_secret: Some(SECRET.replace('0', "z")),
            ..config(dir.path())
        })
        .unwrap();
        let token = a
            .mint(Uuid::new_v4(), None, Duration::from_secs(60))
            .unwrap();
        assert!(b.verify_user(&token).await.is_err());
        let expired = sign(json!({"sub": Uuid::new_v4(), "exp": 1_000}));
        assert!(a.verify_user(&expired).await.is_err());
        assert!(a.verify_user("not a token").await.is_err());
    }

    #[tokio::test]
    async fn aud_and_iss_are_accepted_as_they_are_unless_configured() {
        let dir = tempfile::tempdir().unwrap();
        let user = Uuid::new_v4();
        let exp = now() + 60;
        let from_auth0 = sign(json!({"sub": user, "exp": exp, "aud": "api", "iss": "https://idp"}));
        let open = Auth::from_config(&with_secret(dir.path())).unwrap();
        assert_eq!(open.verify_user(&from_auth0).await.unwrap().id, user);

        let strict = Auth::from_config(&Config {
            jwt_audience: vec!["web".into(), "api".into()],
            jwt_issuer: Some("https://idp".into()),
            ..with_secret(dir.path())
        })
        .unwrap();
        assert_eq!(strict.verify_user(&from_auth0).await.unwrap().id, user);
        for refused in [
            json!({"sub": user, "exp": exp, "aud": "other", "iss": "https://idp"}),
            json!({"sub": user, "exp": exp, "aud": "api", "iss": "https://evil"}),
            json!({"sub": user, "exp": exp, "iss": "https://idp"}),
            json!({"sub": user, "exp": exp, "aud": "api"}),
        ] {
            assert!(
                strict.verify_user(&sign(refused.clone())).await.is_err(),
                "{refused}"
            );
        }
    }

    #[tokio::test]
    async fn nbf_and_exp_are_honoured_within_the_leeway() {
        let dir = tempfile::tempdir().unwrap();
        let user = Uuid::new_v4();
        let auth = Auth::from_config(&Config {
            jwt_leeway_secs: 5,
            ..with_secret(dir.path())
        })
        .unwrap();
        let token =
            |nbf: i64, exp: i64| sign(json!({"sub": user, "nbf": now() + nbf, "exp": now() + exp}));
        assert!(auth.verify_user(&token(-10, 60)).await.is_ok());
        assert!(
            auth.verify_user(&token(3, 60)).await.is_ok(),
            "nbf within the leeway"
        );
        assert!(
            auth.verify_user(&token(30, 60)).await.is_err(),
            "not valid yet"
        );
        assert!(
            auth.verify_user(&token(-60, -3)).await.is_ok(),
            "exp within the leeway"
        );
        assert!(auth.verify_user(&token(-60, -30)).await.is_err(), "expired");
        let expires = auth.verify_user(&token(0, 60)).await.unwrap().expires_at;
        assert!((expires.timestamp() - (now() + 60)).abs() <= 1);
    }

    #[tokio::test]
    async fn the_user_id_comes_from_the_configured_claim() {
        let dir = tempfile::tempdir().unwrap();
        let user = Uuid::new_v4();
        let auth = Auth::from_config(&Config {
            jwt_user_claim: "user_id".into(),
            ..with_secret(dir.path())
        })
        .unwrap();
        let exp = now() + 60;
        let token = sign(json!({"sub": "auth0|123", "user_id": user, "exp": exp}));
        assert_eq!(auth.verify_user(&token).await.unwrap().id, user);
        let without = sign(json!({"sub": user, "exp": exp}));
        assert!(auth.verify_user(&without).await.is_err());
        let not_uuid = sign(json!({"user_id": "bob", "exp": exp}));
        assert!(auth.verify_user(&not_uuid).await.is_err());
    }

    #[test]
    fn admin_key_is_compared_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let a = Auth::from_config(&Config {
            admin_key: Some("secret".into()),
            ..with_secret(dir.path())
        })
        .unwrap();
        assert!(a.verify_admin("secret").is_ok());
        assert!(a.verify_admin("secre").is_err());
        assert!(a.verify_admin("secrets").is_err());
    }

    #[tokio::test]
    async fn es256_tokens_verify_against_a_configured_public_key() {
        use base64::Engine;
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        // SubjectPublicKeyInfo of a P-256 key: a fixed header, then the point.
        let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        spki.extend_from_slice(pair.public_key().as_ref());
        let b64 = base64::engine::general_purpose::STANDARD.encode(&spki);
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("issuer.pem");
        std::fs::write(&key_file, pem).unwrap();
        let auth = Auth::from_config(&Config {
            jwt_algorithm: "ES256".into(),
            jwt_public_key: Some(key_file),
            ..config(dir.path())
        })
        .unwrap();

        let user = Uuid::new_v4();
        let claims = Claims {
            sub: user,
            exp: jsonwebtoken::get_current_timestamp() + 60,
            name: None,
            preferred_username: Some("ann".into()),
        };
        let signing = EncodingKey::from_ec_der(pkcs8.as_ref());
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &signing).unwrap();
        let verified = auth.verify_user(&token).await.unwrap();
        assert_eq!(
            (verified.id, verified.username.as_deref()),
            (user, Some("ann"))
        );

        let hs = jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(b"x"))
            .unwrap();
        assert!(
            auth.verify_user(&hs).await.is_err(),
            "an HS256 token is refused when ES256 is configured"
        );
        assert!(
            auth.mint(user, None, Duration::from_secs(60)).is_err(),
            "no secret to mint with"
        );
    }
}
