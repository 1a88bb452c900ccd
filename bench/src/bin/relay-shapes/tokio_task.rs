//! Shape `tokio`: one current-thread runtime, one task per session, both directions copied by
//! `copy_bidirectional` (read what is there, write it, repeat). pgshroud's relay minus the
//! protocol: what a tokio task per session costs on its own.

use tokio::net::{TcpListener, TcpStream};

use crate::Args;

pub fn run(args: &Args) -> std::io::Result<()> {
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
                // Ends when either side closes or fails; the sockets close on drop.
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    })
}
