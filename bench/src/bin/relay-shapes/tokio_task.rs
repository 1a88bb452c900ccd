//! Shape `tokio`: one current-thread runtime, one task per session, both directions copied by
//! `copy_bidirectional` (read what is there, write it, repeat). pgshroud's relay minus the
//! protocol: what a tokio task per session costs on its own.
//!
//! Shape `tokio-split`: the same runtime, two tasks per session, each copying one direction,
//! so a wake polls only the direction whose socket fired (what pgshroud's `WhenWoken` gates
//! do inside one task): the share of the cost that polling both directions per wake makes.

use tokio::net::{TcpListener, TcpStream};

use crate::Args;

pub fn run(args: &Args, split: bool) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let upstream = args.upstream;
    rt.block_on(async move {
        let listener = TcpListener::bind(args.listen).await?;
        loop {
            let (mut client, _) = listener.accept().await?;
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                if split {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    // Each ends at its source's end; the sockets close when both halves drop.
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    });
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    return;
                }
                // Ends when either side closes or fails; the sockets close on drop.
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    })
}
