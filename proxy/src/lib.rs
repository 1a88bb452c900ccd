//! pgshroud: a transparent encrypting proxy for PostgreSQL.
//!
//! The binary (`main.rs`) wires these modules together; tests and benches use them directly.
//! A client's path: `server` accepts, `session` runs the handshake, authentication and the
//! relay, and every message passes `intercept` on its way through.

pub mod admin;
pub mod analyze;
pub mod audit;
pub mod auth;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod copy_codec;
pub mod crypto;
pub mod demo;
pub mod exchange;
pub mod intercept;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod operator;
pub mod pg_error;
pub mod protect;
pub mod protocol;
pub mod readiness;
pub mod server;
pub mod session;
pub mod setup;
pub mod shutdown;
pub mod statement_metrics;
pub mod upstream_url;
pub mod values;
