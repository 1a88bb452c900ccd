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
