//! Audit events, their tamper-evident chain, and the sinks that write them.
//!
//! A statement's path ends here: `connection` ties each Execute (or statement of a simple
//! query) to its outcome through `exchange`, `normalize` turns its text into something that
//! holds no value, `sink` queues the event to the writer, which chains it (`chain`).

pub mod alert;
pub mod chain;
pub mod connection;
mod error;
pub mod event;
pub mod host;
pub mod normalize;
pub mod sink;
pub mod syslog;
pub mod verify;

use std::sync::Arc;

pub use self::connection::{ConnectionAudit, ConnectionInfo};
pub use self::error::AuditError;
pub use self::event::{Event, EventType};
pub use self::sink::OnFull;

use self::chain::ChainKey;
use self::normalize::{NormalizeCache, Normalized};
use self::sink::{Forward, Sink, Target};
use self::syslog::SyslogSink;
use crate::config::{AuditSettings, AuditTarget};
use crate::ops::metrics::Metrics;

/// The process's audit: the sink, the normalisation cache, and the rules for alerts.
#[derive(Debug)]
pub struct Audit {
    sink: Sink,
    cache: NormalizeCache,
    pub metrics: Arc<Metrics>,
}

impl Audit {
    /// Starts the writer when `audit_file` or `audit_syslog` is set; `None` otherwise. Needs
    /// the audit key.
    pub fn start(
        settings: &AuditSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Arc<Audit>>, AuditError> {
        if !settings.is_on() {
            return Ok(None);
        }
        let options = settings;
        let k0 = ChainKey::load(options.key_file.as_deref()).map_err(AuditError::Key)?;
        let target = settings.target.as_ref().map(|target| match target {
            AuditTarget::Stdout => Target::Stdout,
            AuditTarget::File(path) => Target::File {
                path: path.clone(),
                rotate_bytes: options.rotate_bytes,
            },
        });
        let mut forwards: Vec<Box<dyn Forward>> = Vec::new();
        if let Some(syslog) = &settings.syslog {
            let sink =
                SyslogSink::start(syslog.clone(), metrics.clone()).map_err(AuditError::Syslog)?;
            forwards.push(Box::new(sink));
        }
        let sink = Sink::start_with(
            target,
            forwards,
            options.queue_size,
            options.on_full,
            k0,
            metrics.clone(),
        )
        .map_err(AuditError::File)?;
        Ok(Some(Arc::new(Audit {
            sink,
            cache: NormalizeCache::default(),
            metrics,
        })))
    }

    /// An audit writing to `target` (tests and benches).
    pub fn with_target(
        target: Target,
        on_full: OnFull,
        k0: ChainKey,
    ) -> Result<Arc<Audit>, String> {
        let metrics = Arc::new(Metrics::new());
        let sink = Sink::start(target, 1024, on_full, k0, metrics.clone())?;
        Ok(Arc::new(Audit {
            sink,
            cache: NormalizeCache::default(),
            metrics,
        }))
    }

    pub fn emit(&self, event: Event) {
        self.sink.emit(event);
    }

    /// The normalised form of a SQL text (cached).
    pub fn normalize(&self, sql: &str) -> Arc<Normalized> {
        self.cache.get(sql)
    }

    /// Starts the bounded wait for absent destinations (see [`Sink::begin_close`]).
    pub fn begin_close(&self) {
        self.sink.begin_close();
    }

    /// Flushes the queue and ends the chain segment with `chain_end`.
    pub fn close(&self) {
        self.sink.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigLayer, Settings};

    fn settings(layer: ConfigLayer) -> Result<Settings, String> {
        let base = ConfigLayer {
            upstream: Some("postgres://127.0.0.1:5432".into()),
            ..ConfigLayer::default()
        };
        Settings::resolve(layer.over(base)).map_err(|e| e.to_string())
    }

    #[test]
    fn audit_is_off_without_audit_file() {
        let s = settings(ConfigLayer::default()).unwrap();
        let audit = Audit::start(&s.audit, Arc::new(Metrics::new())).unwrap();
        assert!(audit.is_none());
    }

    #[test]
    fn an_audit_file_without_a_key_stops_start_up() {
        if std::env::var_os(chain::AUDIT_KEY_ENV).is_some() {
            return; // The environment provides a key; nothing to show here.
        }
        let s = settings(ConfigLayer {
            audit_file: Some("-".into()),
            ..ConfigLayer::default()
        })
        .unwrap();
        let e = Audit::start(&s.audit, Arc::new(Metrics::new()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("audit_key_file") && e.contains("PGSHROUD_AUDIT_KEY"),
            "{e}"
        );
    }

    #[test]
    fn on_full_accepts_block_and_drop_only() {
        let on_full = |v: &str| {
            settings(ConfigLayer {
                audit_on_full: Some(v.into()),
                ..ConfigLayer::default()
            })
            .map(|s| s.audit.on_full)
        };
        assert_eq!(on_full("block"), Ok(OnFull::Block));
        assert_eq!(on_full("drop"), Ok(OnFull::Drop));
        assert!(on_full("wait").unwrap_err().contains("audit_on_full"));
        let default = settings(ConfigLayer::default()).unwrap();
        assert_eq!(default.audit.on_full, OnFull::Block);
    }
}
