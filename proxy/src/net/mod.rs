//! Connections on both sides: TLS configuration, the client stream (plain or TLS), the
//! upstream URL, and connecting to the upstream server per `sslmode`.

pub mod stream;
pub mod tls;
pub mod upstream;
pub mod upstream_url;
