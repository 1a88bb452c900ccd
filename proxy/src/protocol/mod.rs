//! The PostgreSQL wire protocol as pgshroud needs it: framing of raw messages, the untyped
//! startup packets, and the message type bytes of both directions.

pub mod fields;
pub mod frame;
pub mod startup;
pub mod types;
