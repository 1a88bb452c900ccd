//! What every session shares: the settings, the client TLS configuration, the upstream, the
//! cancel registry, the live protection (rules and keys), the audit sink, the metrics and the
//! shutdown signal. Built once at start-up by the server, read by sessions; defined here,
//! below both, so neither imports the other back.

pub mod shutdown;

use std::sync::Arc;

use crate::audit::Audit;
use crate::auth::ProxyAuth;
use crate::config::Settings;
use crate::net::upstream::Upstream;
use crate::ops::metrics::Metrics;
use crate::protect::live::LiveProtection;
use crate::session::cancel::CancelRegistry;
use crate::session::cancel_key::CancelCipher;

use self::shutdown::ShutdownWatch;

/// Read-mostly state shared by every session.
pub struct ProxyContext {
    pub settings: Settings,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub upstream: Upstream,
    pub cancels: Arc<CancelRegistry>,
    /// Present when a rules file names protected columns.
    pub protection: Option<Arc<LiveProtection>>,
    pub shutdown: ShutdownWatch,
    pub metrics: Arc<Metrics>,
    /// Present when `audit_file` is set.
    pub audit: Option<Arc<Audit>>,
    /// Present under `auth_mode = "proxy"`.
    pub auth: Option<ProxyAuth>,
}

impl ProxyContext {
    /// Builds everything that can fail at start-up, so a bad setting stops the process early.
    pub fn new(settings: Settings, shutdown: ShutdownWatch) -> Result<ProxyContext, String> {
        let tls = match &settings.client_tls {
            Some(files) => Some(
                crate::net::tls::server_config(&files.cert, &files.key, files.client_ca.as_deref())
                    .map_err(|e| format!("invalid setting `tls_cert`/`tls_key`: {e}"))?,
            ),
            None => None,
        };
        let upstream = Upstream::new(settings.upstream.clone())
            .map_err(|e| format!("invalid setting `upstream`: {e}"))?;
        let auth = ProxyAuth::new(&settings, upstream.tls_config())?;
        let metrics = Arc::new(Metrics::new());
        let protection = crate::protect::load(&settings, metrics.as_ref())?;
        if let Some(live) = &protection {
            live.report_keys(&metrics, settings.rotate_after_days);
        }
        let audit = Audit::start(&settings.audit, metrics.clone()).map_err(|e| e.to_string())?;
        if let (Some(live), Some(audit)) = (&protection, &audit) {
            live.set_audit(audit.clone());
        }
        let cancel_cipher = match &settings.cancel_key_file {
            Some(path) => CancelCipher::from_file(path)?,
            None => CancelCipher::random(),
        };
        Ok(ProxyContext {
            settings,
            tls,
            upstream,
            cancels: Arc::new(CancelRegistry::with_cipher(cancel_cipher)),
            protection,
            shutdown,
            metrics,
            audit,
            auth,
        })
    }
}
