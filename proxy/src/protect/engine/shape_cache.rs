//! The shape cache: templates by (layout fingerprint, shape), bounded in entries and bytes
//! like the exact-text cache (a full cache is cleared: templates are rebuilt by the next full
//! analysis of each shape).

use std::collections::HashMap;
use std::sync::Mutex;

use super::template::Entry;

/// Bounds on the shapes held: entries, and bytes of keys and templates together.
const SHAPE_CACHE_ENTRIES: usize = 5_000;
const SHAPE_CACHE_BYTES: usize = 32 << 20;

#[derive(Default)]
pub(super) struct ShapeCache {
    inner: Mutex<Shapes>,
}

#[derive(Default)]
struct Shapes {
    map: HashMap<(u64, Vec<u8>), Entry>,
    bytes: usize,
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
        let size = key.len() + 64 + entry.as_ref().map_or(0, |t| t.bytes);
        if shapes.map.len() >= SHAPE_CACHE_ENTRIES || shapes.bytes + size > SHAPE_CACHE_BYTES {
            shapes.map.clear();
            shapes.bytes = 0;
        }
        shapes.bytes += size;
        if let Some(old) = shapes.map.insert((fingerprint, key), entry) {
            shapes.bytes = shapes
                .bytes
                .saturating_sub(old.as_ref().map_or(0, |t| t.bytes));
        }
    }

    /// Entries held now (tests and benches).
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |s| s.map.len())
    }
}
