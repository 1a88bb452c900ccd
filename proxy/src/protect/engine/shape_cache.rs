//! The shape cache: templates by (layout fingerprint, shape), and the patterns that find a
//! template for a text without scanning it (`shape_match.rs`), bounded together in entries
//! and bytes like the exact-text cache (a full cache is cleared: templates are rebuilt by the
//! next full analysis of each shape).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::shape::Scanned;
use super::shape_match::{masked_hash, Pattern};
use super::template::{Entry, Template};

/// Bounds on the shapes and patterns held: entries, and bytes of keys and templates together.
const SHAPE_CACHE_ENTRIES: usize = 5_000;
const SHAPE_CACHE_BYTES: usize = 32 << 20;

#[derive(Default)]
pub(super) struct ShapeCache {
    inner: Mutex<Shapes>,
}

#[derive(Default)]
struct Shapes {
    map: HashMap<(u64, Vec<u8>), Entry>,
    /// By `masked_hash(scope, text)`: a pattern of a scanned text and its shape's template.
    patterns: HashMap<u64, (Arc<Pattern>, Arc<Template>)>,
    bytes: usize,
}

impl Shapes {
    /// Makes room for `size` more bytes and one more entry (clearing all when full).
    fn reserve(&mut self, size: usize) {
        if self.map.len() + self.patterns.len() >= SHAPE_CACHE_ENTRIES
            || self.bytes + size > SHAPE_CACHE_BYTES
        {
            self.map.clear();
            self.patterns.clear();
            self.bytes = 0;
        }
        self.bytes += size;
    }
}

impl ShapeCache {
    /// The entry for a shape: `Some(None)` when the shape is known to need the full path.
    pub fn get(&self, fingerprint: u64, key: &[u8]) -> Option<Entry> {
        let shapes = self.inner.lock().ok()?;
        // The map is keyed by owned bytes; a borrowed look-up needs the same tuple type.
        shapes.map.get(&(fingerprint, key.to_vec())).cloned()
    }

    pub fn insert(&self, fingerprint: u64, key: Vec<u8>, entry: Entry) {
        let Ok(mut shapes) = self.inner.lock() else {
            return;
        };
        shapes.reserve(key.len() + 64 + entry.as_ref().map_or(0, |t| t.bytes));
        if let Some(old) = shapes.map.insert((fingerprint, key), entry) {
            shapes.bytes = shapes
                .bytes
                .saturating_sub(old.as_ref().map_or(0, |t| t.bytes));
        }
    }

    /// The template of `sql`'s shape and `sql` read into tokens, when `sql` matches a
    /// pattern held for `scope` (no scanner run); `None` sends it to `shape::scan`.
    pub fn matched(&self, scope: u64, sql: &str) -> Option<(Arc<Template>, Scanned)> {
        let hash = masked_hash(scope, sql);
        let (pattern, template) = {
            let shapes = self.inner.lock().ok()?;
            let (p, t) = shapes.patterns.get(&hash)?;
            (p.clone(), t.clone())
        };
        Some((template, pattern.read(sql)?))
    }

    /// Keeps the pattern of `sql` (as the scanner read it) for later texts that differ from
    /// it only in their plain literals, with its shape's template.
    pub fn remember(&self, scope: u64, sql: &str, scanned: &Scanned, template: Arc<Template>) {
        let Some(pattern) = Pattern::of(sql, scanned) else {
            return;
        };
        // The pattern must read its own text back as the scanner did (it always should).
        match pattern.read(sql) {
            Some(read) if read.tokens == scanned.tokens => {}
            _ => return,
        }
        let Ok(mut shapes) = self.inner.lock() else {
            return;
        };
        let size = pattern.bytes() + 64;
        shapes.reserve(size);
        let hash = masked_hash(scope, sql);
        if let Some((old, _)) = shapes.patterns.insert(hash, (Arc::new(pattern), template)) {
            shapes.bytes = shapes.bytes.saturating_sub(old.bytes() + 64);
        }
    }

    /// Shapes held now (tests and benches; patterns are not counted).
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |s| s.map.len())
    }
}
