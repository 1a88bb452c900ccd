//! What `keys status` counts, shared by the commands that report it (`keys`, `rotate`) and
//! the metrics textfile that exports it; kept apart so the textfile needs neither command.

/// Values of one column under one (envelope format, key version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionCount {
    pub column: String,
    pub format: u8,
    pub version: u32,
    pub values: i64,
}
