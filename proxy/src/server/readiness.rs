//! `/readyz`: the proxy is ready when it is not shutting down and the upstream server accepts
//! TCP connections. The reason given on failure names no secrets.
//!
//! A failed reload (a rules file that does not parse, a key or KMS that does not answer) does
//! not make the proxy unready: the previous rules and keys keep serving correctly, and taking
//! every replica out of a load balancer because KMS blinked would turn a KMS outage into an
//! application outage. `/readyz` stays 200 and says below "ready" that the last reload failed
//! and why, until a reload succeeds.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::context::shutdown::Stage;
use crate::context::ProxyContext;
use crate::ops::admin::Readiness;

pub struct ProxyReadiness {
    ctx: std::sync::Weak<ProxyContext>,
}

impl ProxyReadiness {
    pub fn new(ctx: &Arc<ProxyContext>) -> Self {
        ProxyReadiness {
            ctx: Arc::downgrade(ctx),
        }
    }
}

impl Readiness for ProxyReadiness {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            let ctx = self.ctx.upgrade().ok_or("proxy stopped")?;
            if *ctx.shutdown.borrow() != Stage::Running {
                return Err("shutting down".into());
            }
            let addr = ctx.upstream.url.address();
            match tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect(&addr),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("upstream {addr} unreachable: {e}")),
                Err(_) => Err(format!("upstream {addr} did not answer within 1 s")),
            }
        })
    }

    fn detail(&self) -> Option<String> {
        self.ctx
            .upgrade()?
            .protection
            .as_ref()?
            .last_reload_failure()
    }
}
