//! The error a wrong setting stops start-up with, and the checks the sections share.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

/// A setting that stops start-up, with the setting's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{setting}`: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

pub(super) fn invalid(setting: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.into(),
        problem: problem.into(),
    }
}

pub(super) fn socket_addr(setting: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| invalid(setting, format!("`{text}` is not a host:port address")))
}

pub(super) fn readable_file(setting: &str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path)
        .map(|_| ())
        .map_err(|e| invalid(setting, format!("cannot read {}: {e}", path.display())))
}

pub(super) fn positive(setting: &str, value: usize) -> Result<usize, ConfigError> {
    if value == 0 {
        Err(invalid(setting, "must be greater than 0"))
    } else {
        Ok(value)
    }
}
