//! Tokens from a real identity provider: keys from a JWKS endpoint (a real
//! HTTP server in the test) that rotate and go down, `aud`/`iss`/`nbf` and
//! expired tokens over REST and WebSocket, and tokens that expire on a live
//! connection unless the client renews them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use presence_e2e::*;
use reqwest::StatusCode;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite;
use uuid::Uuid;

/// A signing key of the identity provider, and its public JWK.
struct ProviderKey {
    kid: &'static str,
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl ProviderKey {
    fn es256(kid: &'static str) -> ProviderKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        // The public key is 0x04 || x || y.
        let point = pair.public_key().as_ref();
        ProviderKey {
            kid,
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }),
        }
    }

    fn ed25519(kid: &'static str) -> ProviderKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        ProviderKey {
            kid,
            algorithm: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            }),
        }
    }

    fn sign(&self, claims: Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

/// A JWKS endpoint on loopback whose answer the test changes, counting the
/// fetches it serves.
struct Provider {
    url: String,
    answer: Arc<std::sync::Mutex<(u16, String)>>,
    fetches: Arc<AtomicUsize>,
}

impl Provider {
    async fn start() -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let answer = Arc::new(std::sync::Mutex::new((503, "starting".to_owned())));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (a, f) = (answer.clone(), fetches.clone());
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let (a, f) = (a.clone(), f.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    let _ = tcp.read(&mut buf).await;
                    f.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = a.lock().unwrap().clone();
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                         cache-control: public, max-age=3600\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tcp.write_all(response.as_bytes()).await;
                });
            }
        });
        Provider {
            url,
            answer,
            fetches,
        }
    }

    fn serve(&self, keys: &[&ProviderKey]) {
        let jwks = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        *self.answer.lock().unwrap() = (200, jwks.to_string());
    }

    fn fail(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_owned());
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn claims(user: Uuid, extra: Value) -> Value {
    let mut c = json!({"sub": user, "exp": jsonwebtoken_exp(3600), "aud": "presence", "iss": "https://idp.test"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

async fn status_with(app: &TestApp, token: &str) -> StatusCode {
    app.http
        .get(app.url("/api/v1/users/me/status"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

async fn health(app: &TestApp) -> (StatusCode, Value) {
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn upgrade_status(app: &TestApp, token: &str) -> Option<u16> {
    match tokio_tungstenite::connect_async(app.ws_url(token, None)).await {
        Ok(_) => None,
        Err(tungstenite::Error::Http(r)) => Some(r.status().as_u16()),
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_the_providers_jwks_and_follow_its_rotation() {
    let provider = Provider::start().await;
    let (a, b, ed) = (
        ProviderKey::es256("key-a"),
        ProviderKey::es256("key-b"),
        ProviderKey::ed25519("key-ed"),
    );
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = format!("sqlite://{}", dir.path().join("p.db").display());
    let jwks = provider.url.clone();
    let app = spawn_app_on(db, dir, |c| {
        c.jwt_jwks_url = Some(jwks);
        c.jwt_audience = vec!["presence".into(), "admin-console".into()];
        c.jwt_issuer = Some("https://idp.test".into());
    })
    .await;
    let user = Uuid::new_v4();

    // The provider is not answering yet: the node says why it cannot serve.
    let (status, body) = health(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("identity provider"),
        "{body}"
    );

    // It comes up, and the node's next fetch finds it.
    provider.serve(&[&a]);
    wait_for(|| async { health(&app).await.0 == StatusCode::OK }).await;
    assert_eq!(
        status_with(&app, &a.sign(claims(user, json!({})))).await,
        StatusCode::OK
    );

    // Audience, issuer and nbf hold, over REST and WebSocket alike.
    for refused in [
        json!({"aud": "someone-else"}),
        json!({"iss": "https://evil.test"}),
        json!({"nbf": jsonwebtoken_exp(600)}),
        json!({"exp": jsonwebtoken_exp(-600)}),
    ] {
        let token = a.sign(claims(user, refused.clone()));
        assert_eq!(
            status_with(&app, &token).await,
            StatusCode::UNAUTHORIZED,
            "{refused}"
        );
        assert_eq!(upgrade_status(&app, &token).await, Some(401), "{refused}");
    }
    let console = a.sign(claims(user, json!({"aud": ["admin-console", "other"]})));
    assert_eq!(status_with(&app, &console).await, StatusCode::OK);
    let mut ws = app
        .connect_with(&a.sign(claims(user, json!({}))), None)
        .await;
    assert_eq!(ws.ready["user_id"], user.to_string());

    // The provider rotates to key B (and an EdDSA key): the first token
    // signed with B fetches the key set again, at once.
    provider.serve(&[&b, &ed]);
    let before = provider.fetches();
    assert_eq!(
        status_with(&app, &b.sign(claims(user, json!({})))).await,
        StatusCode::OK
    );
    assert_eq!(provider.fetches(), before + 1);
    assert_eq!(
        status_with(&app, &ed.sign(claims(user, json!({})))).await,
        StatusCode::OK
    );
    // A's tokens are refused now, and an unknown key id within 10 s of the
    // last fetch it caused does not fetch again.
    let retired = a.sign(claims(user, json!({})));
    assert_eq!(status_with(&app, &retired).await, StatusCode::UNAUTHORIZED);
    assert_eq!(provider.fetches(), before + 1);

    // The provider answers garbage (unit tests cover the other failures):
    // the fetch an unknown key id forces fails, and the last good keys serve on.
    provider.fail(200, "<html>not a key set</html>");
    tokio::time::sleep(jwks_refetch_gap()).await;
    let unknown = ProviderKey::es256("key-unknown").sign(claims(user, json!({})));
    assert_eq!(status_with(&app, &unknown).await, StatusCode::UNAUTHORIZED);
    assert_eq!(provider.fetches(), before + 2);
    assert_eq!(
        status_with(&app, &b.sign(claims(user, json!({})))).await,
        StatusCode::OK
    );
    assert_eq!(health(&app).await.0, StatusCode::OK);
    ws.send("ping", json!({})).await;
    ws.next_of("pong").await;
}

/// Polls `done` until it holds (the node's next fetch is up to 10 s away).
async fn wait_for<F: Future<Output = bool>>(done: impl Fn() -> F) {
    let started = std::time::Instant::now();
    while !done().await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "gave up waiting"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The gap after which an unknown key id may fetch again.
fn jwks_refetch_gap() -> Duration {
    presence::auth::jwks::UNKNOWN_KID_REFETCH + Duration::from_millis(100)
}

/// A server whose tokens get no leeway, so expiry is visible at once.
async fn strict_app() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = format!("sqlite://{}", dir.path().join("p.db").display());
    spawn_app_on(db, dir, |c| c.jwt_leeway_secs = 0).await
}

fn token_until(user: Uuid, secs: i64) -> String {
    sign(
        &json!({"sub": user, "exp": jsonwebtoken_exp(secs)}),
        JWT_SECRET,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_token_expires_is_told_and_closed_with_4001() {
    let app = strict_app().await;
    let user = app.user("Ann").await;
    let mut c = app.connect_with(&token_until(user, 2), None).await;
    let error = c.next_of("error").await;
    assert_eq!(error["code"], "token_expired");
    assert_eq!(c.closed().await, Some(4001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_token_keeps_the_connection_past_the_first_ones_expiry() {
    let app = strict_app().await;
    let (ann, bob) = (app.user("Ann").await, app.user("Bob").await);
    let mut c = app.connect_with(&token_until(ann, 2), None).await;

    // Garbage, a token of another user, and a forged one: refused, nothing changes.
    c.send("auth", json!({"token": 42})).await;
    let bad = c.next_of("error").await;
    assert_eq!(
        (bad["code"].as_str(), bad["ref_type"].as_str()),
        (Some("bad_request"), Some("auth"))
    );
    c.send("auth", json!({"token": token_until(bob, 3600)}))
        .await;
    assert_eq!(c.next_of("error").await["code"], "forbidden");
    c.send("auth", json!({"token": sign(&json!({"sub": ann, "exp": jsonwebtoken_exp(3600)}), "forged-forged-forged-forged-forged")})).await;
    assert_eq!(c.next_of("error").await["code"], "unauthorized");

    let renewed_until = jsonwebtoken_exp(3600);
    let fresh = sign(&json!({"sub": ann, "exp": renewed_until}), JWT_SECRET);
    c.send("auth", json!({"token": fresh})).await;
    let ok = c.next_of("auth_ok").await;
    let expires = chrono::DateTime::parse_from_rfc3339(ok["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires.timestamp(), renewed_until);
    assert!(ok["expires_at"].as_str().unwrap().ends_with('Z'));

    // Past the first token's expiry, the connection still answers.
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.send("ping", json!({})).await;
    c.next_of("pong").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_renewal_keeps_the_old_expiry() {
    let app = strict_app().await;
    let (ann, bob) = (app.user("Ann").await, app.user("Bob").await);
    let mut c = app.connect_with(&token_until(ann, 2), None).await;
    c.send("auth", json!({"token": token_until(bob, 3600)}))
        .await;
    assert_eq!(c.next_of("error").await["code"], "forbidden");
    assert_eq!(c.next_of("error").await["code"], "token_expired");
    assert_eq!(c.closed().await, Some(4001));
}
