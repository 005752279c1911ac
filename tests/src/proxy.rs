//! A TCP proxy a test can cut and restore, to take a real service (the
//! database) away from the server and give it back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct TcpProxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// The open connections, to cut them all at once.
    pipes: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl TcpProxy {
    /// Forwards connections on a fresh loopback port to `target`.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let pipes: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = {
            let (up, pipes) = (up.clone(), pipes.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // refused while cut: the socket is dropped
                    }
                    let pipe = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    pipes.lock().unwrap().push(pipe.abort_handle());
                }
            })
            .abort_handle()
        };
        TcpProxy {
            addr,
            up,
            pipes,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for p in self.pipes.lock().unwrap().drain(..) {
            p.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// `url` pointed at this proxy instead of the `host:port` it names.
    pub fn url_for(&self, url: &str) -> String {
        let (start, end) = authority(url);
        format!("{}{}{}", &url[..start], self.addr, &url[end..])
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// The `host:port` a URL names (an IP address here).
pub fn target_of(url: &str) -> SocketAddr {
    let (start, end) = authority(url);
    url[start..end]
        .parse()
        .expect("an ip:port address in the URL")
}

fn authority(url: &str) -> (usize, usize) {
    let scheme_end = url.find("://").expect("a URL") + 3;
    let start = url[scheme_end..]
        .find('@')
        .map_or(scheme_end, |i| scheme_end + i + 1);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    (start, end)
}
