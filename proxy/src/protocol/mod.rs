//! The PostgreSQL wire protocol as pgshroud needs it: framing of raw messages, the untyped
//! startup packets, the message type bytes of both directions, errors and SQLSTATEs, how the
//! server reads text (its reported settings), the prepared statements and portals the server
//! holds, and the request/reply exchanges a session is in.

pub mod error;
pub mod exchange;
pub mod fields;
pub mod frame;
pub mod replies;
pub mod startup;
pub mod text_settings;
pub mod tracker;
pub mod types;
pub mod verdict;
