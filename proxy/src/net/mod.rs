//! Connections on both sides: TLS configuration, the client stream (plain or TLS), and
//! connecting to the upstream server per `sslmode`.

pub mod stream;
pub mod tls;
pub mod upstream;
