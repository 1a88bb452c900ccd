//! Where the writer's lines land: stdout, a writer (tests), or an append-only file rotated by
//! size, reopened after a restart with the chain value its last line ends with.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use time::format_description::FormatItem;
use time::macros::format_description;

use super::Target;
use crate::audit::chain::{split_line, CHAIN_LEN};

/// Rotated files are named `<path>.<UTC time>`, so a glob lists them in order.
pub(super) const ROTATED_FORMAT: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:6]Z");

pub(super) struct Output {
    sink: Box<dyn Write + Send>,
    file: Option<FileState>,
    /// The last chain value of the file being appended to, when it has one.
    pub(super) previous_chain: Option<[u8; CHAIN_LEN]>,
}

pub(super) struct FileState {
    path: PathBuf,
    size: u64,
    rotate_bytes: Option<u64>,
}

impl Output {
    pub(super) fn open(target: Target) -> Result<Output, String> {
        match target {
            Target::Stdout => Ok(Output {
                sink: Box::new(std::io::stdout()),
                file: None,
                previous_chain: None,
            }),
            Target::Writer(w) => Ok(Output {
                sink: w,
                file: None,
                previous_chain: None,
            }),
            Target::File { path, rotate_bytes } => {
                let previous_chain = last_chain(&path);
                let (mut file, mut size) = open_append(&path)?;
                if !ends_with_newline(&path) {
                    // A crash cut the last line short: keep the new segment on lines of its own
                    // (verify reports the cut line).
                    file.write_all(b"\n").map_err(|e| {
                        format!("cannot write the audit file {}: {e}", path.display())
                    })?;
                    size += 1;
                }
                Ok(Output {
                    sink: Box::new(BufWriter::new(file)),
                    file: Some(FileState {
                        path,
                        size,
                        rotate_bytes,
                    }),
                    previous_chain,
                })
            }
        }
    }

    pub(super) fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.sink.write_all(line)?;
        if let Some(f) = &mut self.file {
            f.size += line.len() as u64;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        self.sink.flush()
    }

    pub(super) fn wants_rotation(&self) -> bool {
        matches!(&self.file, Some(f) if f.rotate_bytes.is_some_and(|max| f.size >= max))
    }

    /// Renames the current file aside and continues in a fresh one at the same path.
    pub(super) fn rotate(&mut self) -> Result<(), String> {
        let Some(state) = &mut self.file else {
            return Ok(());
        };
        self.sink.flush().map_err(|e| e.to_string())?;
        let stamp = time::OffsetDateTime::now_utc()
            .format(ROTATED_FORMAT)
            .unwrap_or_default();
        let mut aside = PathBuf::from(format!("{}.{stamp}", state.path.display()));
        let mut n = 1;
        while aside.exists() {
            aside = PathBuf::from(format!("{}.{stamp}-{n}", state.path.display()));
            n += 1;
        }
        std::fs::rename(&state.path, &aside)
            .map_err(|e| format!("{} -> {}: {e}", state.path.display(), aside.display()))?;
        let (file, size) = open_append(&state.path)?;
        self.sink = Box::new(BufWriter::new(file));
        state.size = size;
        Ok(())
    }
}

pub(super) fn open_append(path: &Path) -> Result<(File, u64), String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open the audit file {}: {e}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((file, size))
}

/// Whether `path` is empty, missing, or ends with a newline.
pub(super) fn ends_with_newline(path: &Path) -> bool {
    let Ok(mut file) = File::open(path) else {
        return true;
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 || file.seek(SeekFrom::Start(len - 1)).is_err() {
        return true;
    }
    let mut last = [0u8; 1];
    file.read_exact(&mut last).is_err() || last[0] == b'\n'
}

/// The chain value on the last complete line of `path`, if it has one.
pub fn last_chain(path: &Path) -> Option<[u8; CHAIN_LEN]> {
    const TAIL: u64 = 256 * 1024;
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL))).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    let body = tail.strip_suffix(b"\n")?;
    let line = body.rsplit(|&b| b == b'\n').next()?;
    split_line(line).map(|(_, chain)| chain)
}
