//! Who is calling: user JWTs (issued by the chat backend) and the admin key.
//! Secrets that are not configured are generated once into the data directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Config;

/// Random bytes in a generated secret (hex-encoded on disk).
const GENERATED_SECRET_BYTES: usize = 32;
/// Clock skew tolerated on `exp`.
const EXP_LEEWAY_SECS: u64 = 30;

/// The claims we read from a user token (SPEC §2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
}

/// An authenticated end user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub name: Option<String>,
    pub username: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("invalid token")]
    Invalid,
}

/// Verifies user tokens and the admin key.
pub struct Auth {
    decoding: DecodingKey,
    /// Present only for HS256, where we can mint tokens too.
    encoding: Option<EncodingKey>,
    validation: Validation,
    admin_key: String,
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
            other => bail!("unsupported jwt_algorithm {other:?}: use HS256, RS256 or ES256"),
        };
        let (decoding, encoding) = match (&config.jwt_public_key, algorithm) {
            (None, Algorithm::HS256) => {
                let secret = match &config.jwt_secret {
                    Some(s) => s.clone(),
                    None => load_or_generate(&config.data_dir, "jwt_secret")?,
                };
                (
                    DecodingKey::from_secret(secret.as_bytes()),
                    Some(EncodingKey::from_secret(secret.as_bytes())),
                )
            }
            (Some(path), Algorithm::RS256 | Algorithm::ES256) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("reading jwt_public_key {}", path.display()))?;
                let key = if algorithm == Algorithm::RS256 {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ec_pem(&pem)
                }
                .with_context(|| format!("parsing {}", path.display()))?;
                (key, None)
            }
            (None, _) => bail!("jwt_algorithm {algorithm:?} needs jwt_public_key"),
            (Some(_), _) => bail!("jwt_public_key needs jwt_algorithm RS256 or ES256"),
        };
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = EXP_LEEWAY_SECS;
        Ok(Auth {
            decoding,
            encoding,
            validation,
            admin_key,
        })
    }

    pub fn verify_user(&self, token: &str) -> Result<User, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| AuthError::Invalid)?;
        let c = data.claims;
        Ok(User {
            id: c.sub,
            name: c.name,
            username: c.preferred_username,
        })
    }

    pub fn verify_admin(&self, key: &str) -> Result<(), AuthError> {
        if constant_time_eq(key.as_bytes(), self.admin_key.as_bytes()) {
            Ok(())
        } else {
            Err(AuthError::Invalid)
        }
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
    use std::time::Duration;

    fn config(dir: &Path) -> Config {
        Config {
            data_dir: dir.to_owned(),
            ..Config::default()
        }
    }

    #[test]
    fn generated_secrets_are_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = Auth::from_config(&config(dir.path())).unwrap();
        let token = a
            .mint(Uuid::new_v4(), Some("John".into()), Duration::from_secs(60))
            .unwrap();
        let b = Auth::from_config(&config(dir.path())).unwrap();
        assert_eq!(b.verify_user(&token).unwrap().name.as_deref(), Some("John"));
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
    fn forged_and_expired_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Auth::from_config(&Config {
            jwt_secret: Some("one".into()),
            ..config(dir.path())
        })
        .unwrap();
        let b = Auth::from_config(&Config {
            jwt_secret: Some("two".into()),
            ..config(dir.path())
        })
        .unwrap();
        let token = a
            .mint(Uuid::new_v4(), None, Duration::from_secs(60))
            .unwrap();
        assert!(b.verify_user(&token).is_err());
        let expired = Claims {
            sub: Uuid::new_v4(),
            exp: 1_000,
            name: None,
            preferred_username: None,
        };
        let t = jsonwebtoken::encode(
            &Header::default(),
            &expired,
            &EncodingKey::from_secret(b"one"),
        )
        .unwrap();
        assert!(a.verify_user(&t).is_err());
        assert!(a.verify_user("not a token").is_err());
    }

    #[test]
    fn admin_key_is_compared_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let a = Auth::from_config(&Config {
            admin_key: Some("secret".into()),
            ..config(dir.path())
        })
        .unwrap();
        assert!(a.verify_admin("secret").is_ok());
        assert!(a.verify_admin("secre").is_err());
        assert!(a.verify_admin("secrets").is_err());
    }

    #[test]
    fn es256_tokens_verify_against_a_configured_public_key() {
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
        let verified = auth.verify_user(&token).unwrap();
        assert_eq!(
            (verified.id, verified.username.as_deref()),
            (user, Some("ann"))
        );

        let hs = jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(b"x"))
            .unwrap();
        assert!(
            auth.verify_user(&hs).is_err(),
            "an HS256 token is refused when ES256 is configured"
        );
        assert!(
            auth.mint(user, None, Duration::from_secs(60)).is_err(),
            "no secret to mint with"
        );
    }
}
