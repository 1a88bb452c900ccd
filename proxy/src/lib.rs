//! pgshroud: a transparent encrypting proxy for PostgreSQL.
//!
//! The binary (`main.rs`) wires these modules together; tests and benches use them directly.

pub mod audit;
pub mod crypto;
