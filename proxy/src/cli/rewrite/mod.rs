//! The engine `pgshroud rotate` (master and tenant keys) and `pgshroud migrate` rewrite columns with: a walk over
//! a table in `ctid` order, one short transaction per batch that locks only its own rows
//! (`FOR UPDATE`), a progress bar, and raw access to values in their binary form.
//!
//! Resumability is the callers' part and comes from their filters: each names exactly the rows
//! still to do (not under the active key version; shadow not filled yet), so a committed batch
//! never comes back and an interrupted one was rolled back.

pub mod batch;
pub mod progress;
pub mod reseal;

/// The shadow column `pgshroud migrate` fills beside `column` (named here, below both
/// `migrate` and `check`, which reports columns mid-migration).
pub fn shadow_name(column: &str) -> String {
    format!("{column}__pgshroud")
}
