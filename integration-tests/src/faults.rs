//! Fault injection between the proxy and PostgreSQL: a TCP relay whose connections can be cut
//! at any moment, to play an upstream that dies mid-query without saying goodbye.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A loopback TCP relay to `target`.
pub struct CuttableRelay {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl CuttableRelay {
    pub async fn start(target: SocketAddr) -> CuttableRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().unwrap();
        let (cut, watch) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|c| *c) => {}
                    }
                    // Dropping both sockets here closes them without any protocol message.
                });
            }
        });
        CuttableRelay { addr, cut }
    }

    /// Closes every relayed connection at once.
    pub fn cut(&self) {
        let _ = self.cut.send(true);
    }
}

/// A loopback TCP relay to `target` that, when the server closes a connection, tells the test
/// and keeps the proxy's side open until released: it shows whether the proxy waits for the
/// server to close (a forwarded CancelRequest) before it closes its own client's connection.
pub struct HeldCloseRelay {
    pub addr: SocketAddr,
    release: watch::Sender<bool>,
    closed: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<()>>,
}

impl HeldCloseRelay {
    pub async fn start(target: SocketAddr) -> HeldCloseRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().unwrap();
        let (release, watch) = watch::channel(false);
        let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let mut watch = watch.clone();
                let closed_tx = closed_tx.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut in_rd, mut in_wr) = inbound.into_split();
                    let (mut out_rd, mut out_wr) = outbound.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut in_rd, &mut out_wr).await;
                    });
                    let _ = tokio::io::copy(&mut out_rd, &mut in_wr).await;
                    let _ = closed_tx.send(());
                    let _ = watch.wait_for(|r| *r).await;
                    // Dropping the write half now closes the proxy's side.
                });
            }
        });
        HeldCloseRelay {
            addr,
            release,
            closed: tokio::sync::Mutex::new(closed),
        }
    }

    /// Waits until the server has closed one more relayed connection.
    pub async fn server_closed(&self) {
        self.closed.lock().await.recv().await;
    }

    /// Closes the proxy's side of every connection the server has closed (and of later ones
    /// as they close).
    pub fn release(&self) {
        let _ = self.release.send(true);
    }
}
