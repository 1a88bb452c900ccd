//! The operator's record of a forget: `--audit-file` gets one chained segment per run
//! (`chain_start`, `tenant_forgotten`, `tenant_rows_deleted`, `chain_end`), written by the
//! proxy's own audit writer with the audit key, so `pgshroud audit verify` checks it like any
//! proxy log and a second run's segment names the chain value of the first (`prev_chain`).
//! The proxy's events say when each instance dropped the key; this says who destroyed it and
//! when, even if no proxy was running.

use std::path::PathBuf;
use std::sync::Arc;

use crate::audit::chain::ChainKey;
use crate::audit::sink::Target;
use crate::audit::{Audit, Event, EventType, OnFull};
use crate::cli::args::ForgetArgs;

/// The audit key and file, checked before the key is destroyed.
pub struct Prepared {
    path: PathBuf,
    k0: ChainKey,
}

/// An open segment.
pub struct Record {
    audit: Arc<Audit>,
}

/// Loads the audit key and checks the file can be appended to: a forget whose record cannot
/// be written must not start.
pub fn prepare(args: &ForgetArgs) -> Result<Option<Prepared>, String> {
    let Some(path) = &args.audit_file else {
        return Ok(None);
    };
    let k0 = ChainKey::load(args.audit_key_file.as_deref())?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot append to the audit file {}: {e}", path.display()))?;
    Ok(Some(Prepared {
        path: path.clone(),
        k0,
    }))
}

impl Prepared {
    /// Starts the segment (its `chain_start` follows the file's last chain value).
    pub fn open(self) -> Result<Record, String> {
        let audit = Audit::with_target(
            Target::File {
                path: self.path,
                rotate_bytes: None,
            },
            OnFull::Block,
            self.k0,
        )?;
        Ok(Record { audit })
    }
}

impl Record {
    pub fn forgotten(&self, tenant: &str, forgotten_at: Option<String>) {
        self.audit
            .emit(Event::tenant_forgotten(tenant, forgotten_at, "forget"));
    }

    /// Rows deleted by `--delete-rows`: the tables and the total (no values).
    pub fn rows_deleted(&self, tenant: &str, tables: Vec<String>, rows: u64) {
        let mut e = Event::new(EventType::TenantRowsDeleted);
        e.tenant = Some(tenant.to_owned());
        e.instance = Some(crate::audit::event::instance());
        e.source = Some("forget");
        e.tables = Some(tables);
        e.rows = Some(rows);
        self.audit.emit(e);
    }

    /// Writes `chain_end` and waits for the file.
    pub fn close(self) {
        self.audit.close();
    }
}
