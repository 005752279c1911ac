//! A chat backend's webhook receiver on loopback, as the README shows one:
//! it checks every request's signature, answers what the test scripted
//! (then 200), and keeps what it accepted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const SECRET: &str = "webhook-secret-for-tests";
/// Scripted as an answer: hold the request and never answer.
pub const HANG: u16 = 0;

/// One POST as it arrived.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The status the receiver answered.
    pub answered: u16,
    /// The events of the body.
    pub events: Vec<Value>,
}

#[derive(Default)]
struct State {
    /// Answers to give next, in order; 200 once they run out.
    script: VecDeque<u16>,
    /// Answer 503 to everything while set.
    down: bool,
    deliveries: Vec<Delivery>,
    /// Requests whose signature did not verify.
    forged: usize,
}

pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, s.clone()));
            }
        });
        Receiver { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/presence", self.addr)
    }

    /// The next answers, then 200.
    pub fn script(&self, answers: &[u16]) {
        self.state.lock().unwrap().script = answers.iter().copied().collect();
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().unwrap().deliveries.clone()
    }

    /// Every event of an accepted (2xx) delivery, in arrival order.
    pub fn accepted(&self) -> Vec<Value> {
        self.deliveries()
            .into_iter()
            .filter(|d| (200..300).contains(&d.answered))
            .flat_map(|d| d.events)
            .collect()
    }

    pub fn forged(&self) -> usize {
        self.state.lock().unwrap().forged
    }
}

/// The README's check: `v1=` + hex HMAC-SHA256(secret, "<timestamp>.<body>").
pub fn verify(secret: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_mac) = signature.strip_prefix("v1=") else {
        return false;
    };
    let Ok(mac_bytes) = hex::decode(hex_mac) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&mac_bytes).is_ok()
}

async fn serve(mut tcp: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while buf.len() < header_end + length {
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = &buf[header_end..header_end + length];
    let signed = verify(
        SECRET,
        &header("presence-timestamp"),
        body,
        &header("presence-signature"),
    );
    let answered = {
        let mut s = state.lock().unwrap();
        if !signed {
            s.forged += 1;
            401
        } else {
            let answered = if s.down {
                503
            } else {
                s.script.pop_front().unwrap_or(200)
            };

            let events = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["events"].as_array().cloned())
                .unwrap_or_default();
            s.deliveries.push(Delivery { answered, events });
            answered
        }
    };
    if answered == HANG {
        // Never answers; the sender's timeout ends it.
        std::future::pending::<()>().await
    }
    let response =
        format!("HTTP/1.1 {answered} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = tcp.write_all(response.as_bytes()).await;
}
