//! `pgshroud audit verify`: re-computes every chain value of one audit file, or of a set of
//! rotated files given in order, and names the first line whose link is broken. A line that
//! repeats, byte for byte, one of the last events checked (a syslog collector stores some
//! events twice when pgshroud sends them again after a lost connection) is skipped and counted.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::chain::{split_line, ChainKey, CHAIN_LEN};

/// How many of the last events of a segment a repeated line is recognised against: more than
/// the syslog sink ever sends again.
const REMEMBERED: usize = 16 * super::syslog::RESEND_FRAMES;

/// Everything checked out (possibly with notes on what could not be checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub events: u64,
    pub files: usize,
    /// Segments with no `chain_end`: a truncated log, a crash, or a proxy still running.
    pub unterminated: Vec<String>,
    pub notes: Vec<String>,
}

/// A link that does not hold, or a file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// `file:line`, or the file alone for read errors.
    pub at: String,
    pub reason: String,
    /// Events whose links held before this one.
    pub events: u64,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: broken chain: {} ({} events checked before it)",
            self.at, self.reason, self.events
        )
    }
}

/// Verifier state across files.
struct State {
    k0: ChainKey,
    key: ChainKey,
    previous: [u8; CHAIN_LEN],
    /// Within a segment (after `chain_start`/`file_start`, before `chain_end`).
    open: bool,
    /// Where the open segment started, for the unterminated report.
    opened_at: String,
    next_seq: u64,
    last_chain: Option<[u8; CHAIN_LEN]>,
    events: u64,
    unterminated: Vec<String>,
    notes: Vec<String>,
    /// SHA-256 of the last lines checked in this segment, by seq, and their order.
    seen: HashMap<u64, [u8; 32]>,
    seen_order: VecDeque<u64>,
    repeats: u64,
}

/// Verifies `files` in the order given with k_0.
pub fn verify(files: &[PathBuf], k0: &ChainKey) -> Result<Verified, Broken> {
    let mut state = State {
        k0: k0.clone(),
        key: k0.clone(),
        previous: [0; CHAIN_LEN],
        open: false,
        opened_at: String::new(),
        next_seq: 0,
        last_chain: None,
        events: 0,
        unterminated: Vec::new(),
        notes: Vec::new(),
        seen: HashMap::new(),
        seen_order: VecDeque::new(),
        repeats: 0,
    };
    for file in files {
        let name = file.display().to_string();
        let f = std::fs::File::open(file).map_err(|e| Broken {
            at: name.clone(),
            reason: format!("cannot read: {e}"),
            events: state.events,
        })?;
        for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
            let at = format!("{name}:{}", i + 1);
            let line = line.map_err(|e| Broken {
                at: at.clone(),
                reason: format!("cannot read: {e}"),
                events: state.events,
            })?;
            state.line(&line, i == 0, &at).map_err(|reason| Broken {
                at,
                reason,
                events: state.events,
            })?;
        }
    }
    if state.open {
        state.unterminated.push(state.opened_at.clone());
    }
    if state.repeats > 0 {
        state.notes.push(format!(
            "{} lines repeat an event already checked, byte for byte (a syslog collector stores some events twice after pgshroud reconnects to it); they were skipped",
            state.repeats
        ));
    }
    Ok(Verified {
        events: state.events,
        files: files.len(),
        unterminated: state.unterminated,
        notes: state.notes,
    })
}

impl State {
    fn line(&mut self, line: &[u8], first_of_file: bool, at: &str) -> Result<(), String> {
        let (canonical, chain) =
            split_line(line).ok_or("not an audit event (no chain value at the end of the line)")?;
        let event: serde_json::Value =
            serde_json::from_slice(&canonical).map_err(|_| "not a JSON object")?;
        let seq = event["seq"].as_u64().ok_or("no seq")?;
        let digest: [u8; 32] = Sha256::digest(line).into();
        if seq < self.next_seq && self.seen.get(&seq) == Some(&digest) {
            self.repeats += 1;
            return Ok(());
        }
        let kind = event["event"].as_str().unwrap_or_default();
        let prev_chain = match event["prev_chain"].as_str() {
            Some(h) => {
                let mut c = [0u8; CHAIN_LEN];
                hex::decode_to_slice(h, &mut c).map_err(|_| "prev_chain is not a chain value")?;
                Some(c)
            }
            None => None,
        };
        match kind {
            "chain_start" => {
                if self.open {
                    self.unterminated.push(self.opened_at.clone());
                }
                if seq != 0 {
                    return Err(format!("chain_start with seq {seq}, not 0"));
                }
                if let (Some(named), Some(last)) = (prev_chain, self.last_chain) {
                    if named != last {
                        return Err("this segment follows a chain value that is not the one before it: events or a whole segment are missing".into());
                    }
                }
                self.key = self.k0.clone();
                self.previous = [0; CHAIN_LEN];
                self.opened_at = at.to_owned();
            }
            "file_start" if !self.open && self.last_chain.is_none() => {
                // The first file given continues a chain from a file not given: start from the
                // chain value this event names and the key for its position.
                let named = prev_chain.ok_or("file_start without prev_chain")?;
                self.key = self.k0.clone();
                for _ in 0..seq {
                    self.key.advance();
                }
                self.previous = named;
                self.opened_at = at.to_owned();
                self.notes.push(format!(
                    "{at}: continues from an earlier file that was not given; give all rotated files in order to check the link between them"
                ));
            }
            "file_start" => {
                if !self.open {
                    return Err("file_start outside a segment".into());
                }
                if prev_chain != self.last_chain {
                    return Err("file_start does not name the last chain value of the file before it: events are missing between the files".into());
                }
                self.check_seq(seq)?;
            }
            _ if first_of_file => {
                return Err(
                    "the file does not begin with chain_start or file_start: lines were deleted at its start".into(),
                );
            }
            _ if !self.open => {
                return Err(
                    "an event after chain_end: lines were inserted, or chain_start deleted".into(),
                );
            }
            _ => self.check_seq(seq)?,
        }
        if self.key.link(&self.previous, &canonical) != chain {
            return Err(if self.events == 0 {
                "the chain value does not match: the event was edited, or this is not the audit key that wrote it".into()
            } else {
                "the chain value does not match: the event was edited, or an event before it was replaced".into()
            });
        }
        if kind == "chain_start" {
            self.seen.clear();
            self.seen_order.clear();
        }
        self.remember(seq, digest);
        self.previous = chain;
        self.last_chain = Some(chain);
        self.key.advance();
        self.next_seq = seq + 1;
        self.events += 1;
        self.open = kind != "chain_end";
        Ok(())
    }

    fn remember(&mut self, seq: u64, digest: [u8; 32]) {
        self.seen.insert(seq, digest);
        self.seen_order.push_back(seq);
        if self.seen_order.len() > REMEMBERED {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }

    fn check_seq(&self, seq: u64) -> Result<(), String> {
        if seq != self.next_seq {
            return Err(format!(
                "seq {seq} where {} was expected: events were deleted, reordered or inserted",
                self.next_seq
            ));
        }
        Ok(())
    }
}

/// Runs the verify command: the report, and the exit code (0 intact, 1 broken, 3 intact but
/// a segment has no end marker).
pub fn run(files: &[PathBuf], key_file: Option<&std::path::Path>) -> (String, u8) {
    match ChainKey::load(key_file) {
        Ok(k0) => report(files, &k0),
        Err(e) => (format!("pgshroud: {e}"), 2),
    }
}

/// The verify report for `files` under k_0, and its exit code.
pub fn report(files: &[PathBuf], k0: &ChainKey) -> (String, u8) {
    match verify(files, k0) {
        Err(broken) => (broken.to_string(), 1),
        Ok(v) => {
            let mut out = String::new();
            for note in &v.notes {
                out.push_str(&format!("note: {note}\n"));
            }
            for start in &v.unterminated {
                out.push_str(&format!(
                    "{start}: this segment has no chain_end: the log was truncated, or pgshroud did not shut down cleanly (or is still writing)\n"
                ));
            }
            out.push_str(&format!(
                "{} events checked in {} file(s): every link holds",
                v.events, v.files
            ));
            let code = if v.unterminated.is_empty() { 0 } else { 3 };
            (out, code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::Chain;
    use crate::audit::event::{Event, EventType};

    fn key() -> ChainKey {
        ChainKey::new([9; 32])
    }

    /// Lines of a finished segment: chain_start, `n` statements, chain_end.
    fn segment(n: usize, prev: Option<[u8; 32]>) -> Vec<String> {
        let mut chain = Chain::start(key());
        let mut lines = Vec::new();
        let mut seq = 0;
        let mut write = |mut e: Event, chain: &mut Chain| {
            e.seq = seq;
            seq += 1;
            let line = chain.seal(&e.canonical());
            lines.push(String::from_utf8(line).unwrap());
        };
        let mut start = Event::new(EventType::ChainStart);
        start.prev_chain = prev.map(hex::encode);
        write(start, &mut chain);
        for i in 0..n {
            let mut e = Event::new(EventType::Statement);
            e.statement = Some(format!("SELECT {i}"));
            write(e, &mut chain);
        }
        write(Event::new(EventType::ChainEnd), &mut chain);
        lines
    }

    fn file(name: &str, lines: &[String]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pgshroud-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, lines.concat()).unwrap();
        path
    }

    fn broken_line(path: &PathBuf) -> String {
        let b = verify(std::slice::from_ref(path), &key()).unwrap_err();
        b.at.rsplit(':').next().unwrap().to_owned()
    }

    #[test]
    fn a_good_file_verifies() {
        let path = file("good", &segment(3, None));
        let v = verify(&[path], &key()).unwrap();
        assert_eq!(v.events, 5);
        assert!(v.unterminated.is_empty());
    }

    #[test]
    fn the_wrong_key_fails_on_the_first_line() {
        let path = file("wrong-key", &segment(1, None));
        let b = verify(&[path], &ChainKey::new([1; 32])).unwrap_err();
        assert!(b.at.ends_with(":1"), "{b}");
        assert!(b.reason.contains("key"));
    }

    #[test]
    fn an_edited_line_is_named() {
        let mut lines = segment(3, None);
        lines[2] = lines[2].replace("SELECT 1", "SELECT 7");
        assert_eq!(broken_line(&file("edited", &lines)), "3");
    }

    #[test]
    fn reordered_lines_are_named() {
        let mut lines = segment(3, None);
        lines.swap(1, 2);
        assert_eq!(broken_line(&file("reordered", &lines)), "2");
    }

    #[test]
    fn a_deleted_line_is_named() {
        let mut lines = segment(3, None);
        lines.remove(2);
        assert_eq!(broken_line(&file("deleted", &lines)), "3");
    }

    #[test]
    fn a_truncated_file_is_told_from_a_finished_one() {
        let mut lines = segment(3, None);
        lines.truncate(3);
        let v = verify(&[file("truncated", &lines)], &key()).unwrap();
        assert_eq!(v.unterminated.len(), 1);
        let (out, code) = report(&[file("truncated", &lines)], &key());
        assert_eq!(code, 3);
        assert!(out.contains("no chain_end"), "{out}");
    }

    #[test]
    fn a_deleted_segment_is_told_from_a_restart() {
        let first = segment(1, None);
        let last_of = |lines: &[String]| {
            let l = lines.last().unwrap();
            split_line(l.trim_end().as_bytes()).unwrap().1
        };
        let second = segment(1, Some(last_of(&first)));
        let third = segment(1, Some(last_of(&second)));
        let restart = [first.clone(), second.clone(), third.clone()].concat();
        assert!(verify(&[file("restarts", &restart)], &key()).is_ok());
        let missing = [first.clone(), third].concat();
        assert_eq!(broken_line(&file("missing-segment", &missing)), "4");
    }

    #[test]
    fn exact_repeats_of_recent_events_are_skipped_and_noted_but_edited_ones_are_not() {
        let lines = segment(5, None);
        // As a collector stores them when the sink sends the last events again after a
        // reconnection: 0..=3, then 1..=3 again, then the rest.
        let mut repeated = lines[..4].to_vec();
        repeated.extend_from_slice(&lines[1..]);
        let checked = verify(&[file("repeats", &repeated)], &key()).unwrap();
        assert_eq!(checked.events, lines.len() as u64);
        assert!(
            checked
                .notes
                .iter()
                .any(|n| n.starts_with("3 lines repeat")),
            "{checked:?}"
        );
        let mut edited = repeated.clone();
        edited[5] = edited[5].replace("\"statement\"", "\"statement \"");
        assert_ne!(edited[5], repeated[5]);
        assert_eq!(broken_line(&file("edited-repeat", &edited)), "6");
    }

    #[test]
    fn lines_deleted_at_the_start_are_caught() {
        let mut lines = segment(3, None);
        lines.remove(0);
        assert_eq!(broken_line(&file("head", &lines)), "1");
    }
}
