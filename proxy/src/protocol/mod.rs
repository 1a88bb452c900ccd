//! The PostgreSQL wire protocol as pgshroud needs it: framing of raw messages, the untyped
//! startup packets, the message type bytes of both directions, and the prepared statements
//! and portals the server holds.

pub mod fields;
pub mod frame;
pub mod startup;
pub mod tracker;
pub mod types;
