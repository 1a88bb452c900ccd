//! The pre-filter's memory of statement texts it found harmless: texts a Parse brought that
//! name no protected table (nor anything `pgshroud`), touch no identity setting, change no
//! setting pgshroud follows (search_path, client_encoding, standard_conforming_strings),
//! have no effect on prepared-statement or portal names (PREPARE, DEALLOCATE, DISCARD,
//! DECLARE, CLOSE), are no FETCH, and pass the role's checks. A driver sends the same few
//! texts again and again (pgbench -M extended: one per transaction): the next Parse of the
//! very same bytes skips those readings, which cost more than the rest of the message.
//!
//! What keeps it exact (fail closed): only ASCII texts without a backslash are kept, whose
//! reading no client_encoding, standard_conforming_strings or pending settings change can
//! alter; the memory is keyed by the rules generation, the session's plans epoch and its text
//! mode, and forgotten whenever the layout or the role's policy is rebuilt (a catalog look-up,
//! a reload, a migrating column's swap), which are the only other inputs of those verdicts.
//! State the verdicts also read (a tenant switch in flight, a search_path change in the open
//! transaction, a name in use) is checked on every Parse, memory or not.
//!
//! **Shapes** (simple protocol). Every pgbench -S Query carries a new literal, so no text
//! comes twice. A text the full path forwarded untouched whose every cheap gate is silent
//! (`analyze::gates::any_gate`, the pre-filter's names, the tracker's effect words, `fetch`:
//! its verdict rests on those words alone) has its shape remembered: PostgreSQL's scanner's
//! tokens with its plain literals cut out ([`TextShape`]). A later text the shape matches is
//! the same tokens with other plain literals (`shape_match.rs`, held to the scanner by its
//! tests), and is forwarded the same way when no gate fires on its literals' own bytes
//! either. Why that is the full path's answer: a gate's word found in the new text lies in
//! the fixed text (then it was in the remembered text too), inside a literal (asked), or
//! straddles a literal's edge, which is a quote or a digit beside a separator
//! (`TextShape::numbers_stand_apart`); no gate word holds a quote or a digit, and the
//! pre-filter's table names are checked to hold neither such digit nor a quote
//! (`ProtectedSchema::needles_stand_apart`). The decoding forms the gates flag (`U&`, `E'`,
//! backslashes, strings continued over a newline) cannot appear at a literal's edge of a
//! matched text: the scanner would have read another token there, or the text is not kept
//! (ASCII without a backslash only, as for texts). A shape is scanned on the second sight
//! of its look-up key, once: texts whose shapes never come back cost a hash, not a scan.

use std::ops::Range;

use crate::protect::engine::TextShape;
use crate::protocol::text_settings::TextMode;

/// How many texts a session remembers (a ring: the oldest goes first).
const SLOTS: usize = 8;
/// How many shapes a session remembers (a ring).
const SHAPE_SLOTS: usize = 8;
/// The longest text remembered, or matched against a remembered shape: with the slots above,
/// at most about 1 MiB per session.
pub(super) const MAX_KEPT_TEXT: usize = 64 * 1024;
/// How many look-up keys of harmless texts no shape matched a session keeps (a ring).
const SEEN_SLOTS: usize = 16;

/// What the verdicts were made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Under {
    pub generation: u64,
    pub plans_epoch: u64,
    pub mode: TextMode,
}

#[derive(Debug, Default)]
pub(super) struct HarmlessTexts {
    under: Option<Under>,
    texts: Vec<String>,
    /// The slot the next text replaces once all are taken.
    next: usize,
    shapes: Vec<TextShape>,
    next_shape: usize,
    /// Look-up keys of harmless texts no shape matched, and whether their shape was tried.
    seen: Vec<(u64, bool)>,
    next_seen: usize,
    /// The literal spans of the last match (kept, so a match allocates nothing).
    spans: Vec<Range<usize>>,
}

impl HarmlessTexts {
    /// The text, owned, if these very bytes were found harmless under `under`.
    pub fn known(&mut self, under: Under, text: &[u8]) -> Option<String> {
        if self.under != Some(under) {
            self.forget();
            return None;
        }
        self.texts
            .iter()
            .find(|known| known.as_bytes() == text)
            .cloned()
    }

    /// Remembers a text found harmless under `under`, if it is one whose reading nothing but
    /// its bytes decides (see the module's notes).
    pub fn remember(&mut self, under: Under, text: &str) {
        if !keepable(text.as_bytes()) {
            return;
        }
        if self.under != Some(under) {
            self.forget();
            self.under = Some(under);
        }
        if self.texts.iter().any(|known| known == text) {
            return;
        }
        if self.texts.len() < SLOTS {
            self.texts.push(text.to_owned());
        } else {
            self.texts[self.next] = text.to_owned();
            self.next = (self.next + 1) % SLOTS;
        }
    }

    /// The literal spans of `text` when a shape remembered under `under` matches it.
    pub fn matching_shape(&mut self, under: Under, text: &str) -> Option<&[Range<usize>]> {
        if self.under != Some(under) {
            self.forget();
            return None;
        }
        let spans = &mut self.spans;
        self.shapes
            .iter()
            .any(|shape| shape.literal_spans(text, spans))
            .then_some(&self.spans[..])
    }

    /// Whether a harmless text no shape matched should have its shape read now: the second
    /// time its look-up key is seen under `under`, and only then.
    pub fn second_sight(&mut self, under: Under, text: &str) -> bool {
        self.under_now(under);
        let key = TextShape::key(text);
        if let Some((_, tried)) = self.seen.iter_mut().find(|(k, _)| *k == key) {
            return !std::mem::replace(tried, true);
        }
        if self.seen.len() < SEEN_SLOTS {
            self.seen.push((key, false));
        } else {
            self.seen[self.next_seen] = (key, false);
            self.next_seen = (self.next_seen + 1) % SEEN_SLOTS;
        }
        false
    }

    /// Remembers the shape of a text found harmless under `under` by its gates alone.
    pub fn remember_shape(&mut self, under: Under, shape: TextShape) {
        self.under_now(under);
        if self.shapes.len() < SHAPE_SLOTS {
            self.shapes.push(shape);
        } else {
            self.shapes[self.next_shape] = shape;
            self.next_shape = (self.next_shape + 1) % SHAPE_SLOTS;
        }
    }

    fn under_now(&mut self, under: Under) {
        if self.under != Some(under) {
            self.forget();
            self.under = Some(under);
        }
    }

    /// What the verdicts rest on changed: nothing is known any more.
    pub fn forget(&mut self) {
        self.under = None;
        self.texts.clear();
        self.next = 0;
        self.shapes.clear();
        self.next_shape = 0;
        self.seen.clear();
        self.next_seen = 0;
    }
}

/// ASCII without a backslash reads the same under every client_encoding pgshroud allows and
/// either standard_conforming_strings. Only texts up to [`MAX_KEPT_TEXT`] bytes: the slots
/// were bounded in number only, and eight 200 MiB texts (or shapes of them) stayed with the
/// session for its life; longer texts take the full path, whose cost is small next to theirs.
pub(super) fn keepable(text: &[u8]) -> bool {
    text.len() <= MAX_KEPT_TEXT && text.is_ascii() && !text.contains(&b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Under = Under {
        generation: 1,
        plans_epoch: 0,
        mode: TextMode::Standard,
    };

    #[test]
    fn long_texts_are_not_kept() {
        let mut h = HarmlessTexts::default();
        let long = format!("select '{}'", "x".repeat(MAX_KEPT_TEXT));
        h.remember(NOW, &long);
        assert_eq!(h.known(NOW, long.as_bytes()), None);
        assert!(h.texts.is_empty());
        let fits = format!("select '{}'", "x".repeat(MAX_KEPT_TEXT - 20));
        h.remember(NOW, &fits);
        assert!(h.known(NOW, fits.as_bytes()).is_some());
    }

    #[test]
    fn only_the_same_bytes_under_the_same_rules_are_known() {
        let mut h = HarmlessTexts::default();
        h.remember(NOW, "select 1");
        assert_eq!(h.known(NOW, b"select 1").as_deref(), Some("select 1"));
        assert_eq!(h.known(NOW, b"SELECT 1"), None);
        assert_eq!(h.known(NOW, b"select 1 "), None);
        let reloaded = Under {
            generation: 2,
            ..NOW
        };
        assert_eq!(h.known(reloaded, b"select 1"), None);
        // Forgotten for good, not only under the new key.
        assert_eq!(h.known(NOW, b"select 1"), None);
        h.remember(NOW, "select 1");
        let other_mode = Under {
            mode: TextMode::BackslashEscapes,
            ..NOW
        };
        assert_eq!(h.known(other_mode, b"select 1"), None);
    }

    #[test]
    fn texts_whose_reading_depends_on_settings_are_not_kept() {
        let mut h = HarmlessTexts::default();
        h.remember(NOW, "select 'a\\' as x");
        h.remember(NOW, "select '\u{e9}'");
        assert_eq!(h.known(NOW, b"select 'a\\' as x"), None);
        assert_eq!(h.known(NOW, "select '\u{e9}'".as_bytes()), None);
    }

    #[test]
    fn the_oldest_text_makes_room() {
        let mut h = HarmlessTexts::default();
        for i in 0..=SLOTS {
            h.remember(NOW, &format!("select {i}"));
        }
        assert_eq!(h.known(NOW, b"select 0"), None);
        assert!(h.known(NOW, b"select 1").is_some());
        assert!(h.known(NOW, format!("select {SLOTS}").as_bytes()).is_some());
        h.forget();
        assert_eq!(h.known(NOW, b"select 1"), None);
    }
}
