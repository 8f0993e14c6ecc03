//! A TCP proxy in front of a test broker, on a free loopback port. The broker advertises the
//! proxy's port, so every client connection after the bootstrap one goes through it too. It
//! can speak TLS to the clients ([`Proxy::tls`]), and it can cut the network
//! ([`Proxy::cut`]): every open connection is closed, and each new one is closed as soon as it
//! is accepted, until [`Proxy::restore`]; or it can be slow ([`Proxy::slow`]).

use super::tls::{self, Pki};
use openssl::ssl::{Ssl, SslAcceptor};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::AbortHandle;

/// A proxy to `127.0.0.1:upstream`; stopped on drop.
pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

#[derive(Default)]
struct Shared {
    cut: AtomicBool,
    /// Connections let through: in TLS, those whose handshake succeeded.
    through: AtomicU64,
    /// The tasks of the open connections (finished ones are pruned as new ones come).
    live: Mutex<Vec<AbortHandle>>,
    /// How long each chunk of the broker's answers is held back, in ms ([`Proxy::slow`]).
    delay_ms: AtomicU64,
}

impl Proxy {
    /// A plaintext proxy.
    pub fn plain(upstream: u16) -> Proxy {
        Proxy::start(upstream, None)
    }

    /// A proxy that speaks TLS to its clients with `pki`'s server certificate; with
    /// `client_certificates`, a client must present one the CA signed (mutual TLS).
    pub fn tls(pki: &Pki, upstream: u16, client_certificates: bool) -> Proxy {
        Proxy::start(upstream, Some(Arc::new(tls::acceptor(pki, client_certificates))))
    }

    /// Listens now (so a broker can advertise the port before it starts).
    fn start(upstream: u16, acceptor: Option<Arc<SslAcceptor>>) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((tcp, _)) = listener.accept().await {
                if state.cut.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let _ = tcp.set_nodelay(true);
                let (acceptor, counted) = (acceptor.clone(), state.clone());
                let task = tokio::spawn(async move {
                    match acceptor {
                        None => {
                            counted.through.fetch_add(1, Ordering::SeqCst);
                            forward(tcp, upstream, &counted).await;
                        }
                        Some(acceptor) => {
                            let ssl = Ssl::new(acceptor.context()).unwrap();
                            let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
                            // A client that does not trust the certificate, or has none when
                            // one is required, ends here.
                            if Pin::new(&mut tls).accept().await.is_ok() {
                                counted.through.fetch_add(1, Ordering::SeqCst);
                                forward(tls, upstream, &counted).await;
                            }
                        }
                    }
                });
                let mut live = state.live.lock().unwrap();
                live.retain(|t| !t.is_finished());
                live.push(task.abort_handle());
            }
        });
        Proxy { port, shared, runtime: Some(runtime) }
    }

    /// Connections let through so far (in TLS: whose handshake succeeded).
    pub fn handshakes(&self) -> u64 {
        self.shared.through.load(Ordering::SeqCst)
    }

    /// Cuts the network: closes every open connection, and closes new ones at once.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        for task in self.shared.live.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Ends a [`Proxy::cut`]: new connections go through again.
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// Holds back each chunk of the broker's answers for `delay` (zero: none): a slow broker.
    pub fn slow(&self, delay: std::time::Duration) {
        self.shared.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

/// Copies bytes both ways between `client` and the upstream port until either side closes,
/// holding back the broker's answers as [`Proxy::slow`] says.
async fn forward(client: impl AsyncRead + AsyncWrite + Unpin, upstream: u16, shared: &Shared) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { return };
    let _ = up.set_nodelay(true);
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut up_rx, mut up_tx) = up.into_split();
    let requests = tokio::io::copy(&mut client_rx, &mut up_tx);
    let answers = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match up_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let delay = shared.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            if client_tx.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = requests => {}
        _ = answers => {}
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
