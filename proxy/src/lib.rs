//! pgshroud: a transparent encrypting proxy for PostgreSQL.
//!
//! The binary (`main.rs`) wires these modules together; tests and benches use them directly.
//! A client's path: `server` accepts, `session` runs the handshake, authentication and the
//! relay, and every message passes the session's `statement_path` on its way through, which
//! hands statements on protected tables to `protect`. See ARCHITECTURE.md for the whole map.
//!
//! Layers, top to bottom (a module uses only those below it):
//! - `cli`: arguments and the operator commands (setup, demo, encrypt/decrypt, check);
//! - `server`: the listener, readiness, logging;
//! - `session`: one client connection: handshake, authentication, cancel, the relay and the
//!   statement path;
//! - `context`: what every session shares (settings, upstream, protection, audit, metrics,
//!   shutdown);
//! - `protect`: the statement path of sessions with protected columns; `audit`, `ops`;
//! - `config`, `net`, `protocol`, `auth`;
//! - pure leaves: `analyze` (SQL), `values` (logical types), `crypto`, `copy_codec`.

pub mod analyze;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod context;
pub mod copy_codec;
pub mod crypto;
pub mod net;
pub mod ops;
pub mod protect;
pub mod protocol;
pub mod server;
pub mod session;
pub mod sql_limits;
pub mod values;
