//! The exact-text plan cache, bounded in entries and in bytes: its keys are statement texts a
//! client chose (up to `max_message_size`, 256 MiB by default) and it is shared by every
//! session for the life of the rules, so a bound in entries alone let a client pin 10,000
//! texts of any size. A full cache is simply cleared (plans are cheap to rebuild).

use std::collections::HashMap;
use std::sync::Arc;

use super::plan::{Plan, PlanAction};
use super::PlanKey;

/// Bound on cached plans.
const ENTRIES: usize = 10_000;
/// Bound on the bytes of the cached texts and their rewrites together.
const BYTES: usize = 64 << 20;
/// Texts (with their rewrite) larger than this are planned each time, not kept: one would
/// take a large share of the cache, and planning costs little next to reading such a text.
const LARGEST: usize = BYTES / 64;
/// Rough cost of an entry besides its texts (the key's other parts, the plan's vectors).
const OVERHEAD: usize = 256;

#[derive(Default)]
pub(super) struct PlanCache {
    map: HashMap<PlanKey, (Arc<Plan>, usize)>,
    bytes: usize,
}

impl PlanCache {
    pub fn get(&self, key: &PlanKey) -> Option<Arc<Plan>> {
        self.map.get(key).map(|(plan, _)| plan.clone())
    }

    /// Keeps `plan` unless it is too large to keep; clears the cache first when full.
    pub fn insert(&mut self, key: PlanKey, plan: Arc<Plan>) {
        let size = entry_size(&key, &plan);
        if size > LARGEST {
            return;
        }
        if self.map.len() >= ENTRIES || self.bytes + size > BYTES {
            self.map.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        if let Some((_, old)) = self.map.insert(key, (plan, size)) {
            self.bytes -= old;
        }
    }

    /// Plans held now, and the bytes counted for them.
    pub fn usage(&self) -> (usize, usize) {
        (self.map.len(), self.bytes)
    }
}

fn entry_size(key: &PlanKey, plan: &Plan) -> usize {
    let rewrite = match &plan.action {
        PlanAction::Rewrite(text) => text.len(),
        PlanAction::Refused(error) => {
            error.message.len() + error.detail.as_ref().map_or(0, String::len)
        }
        PlanAction::Forward => 0,
    };
    key.2.len() + rewrite + OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::PgError;

    fn plan() -> Arc<Plan> {
        Arc::new(Plan::refused(PgError::error("42501", "refused")))
    }

    fn key(i: usize, len: usize) -> PlanKey {
        let mut text = format!("SELECT {i} -- ");
        text.push_str(&"x".repeat(len));
        (1, None, text)
    }

    /// A client sending distinct large texts cannot pin more than the byte bound: 500 texts
    /// of 512 KiB (250 MiB) leave at most 64 MiB held.
    #[test]
    fn distinct_large_texts_stay_within_the_byte_bound() {
        let mut cache = PlanCache::default();
        for i in 0..500 {
            cache.insert(key(i, 512 << 10), plan());
            assert!(cache.usage().1 <= BYTES, "{:?}", cache.usage());
        }
        let (entries, bytes) = cache.usage();
        assert!(entries > 0 && bytes > BYTES / 2, "{entries} {bytes}");
        // The last text is still found.
        assert!(cache.get(&key(499, 512 << 10)).is_some());
    }

    #[test]
    fn a_text_larger_than_the_largest_kept_is_not_kept() {
        let mut cache = PlanCache::default();
        cache.insert(key(0, 10), plan());
        cache.insert(key(1, LARGEST), plan());
        assert!(cache.get(&key(1, LARGEST)).is_none());
        // And it did not clear what was held.
        assert!(cache.get(&key(0, 10)).is_some());
    }

    #[test]
    fn small_texts_are_bounded_in_entries() {
        let mut cache = PlanCache::default();
        for i in 0..ENTRIES + 10 {
            cache.insert(key(i, 0), plan());
        }
        assert!(cache.usage().0 <= ENTRIES);
        let again = key(7, 0);
        cache.insert(again.clone(), plan());
        cache.insert(again.clone(), plan());
        let (entries, bytes) = cache.usage();
        assert_eq!(bytes, cache.map.values().map(|(_, s)| s).sum::<usize>());
        assert!(entries <= ENTRIES);
    }
}
