//! What a protected result column becomes for the caller's role: plaintext, a mask, NULL or
//! the stored ciphertext. Decided once per result shape (`RowDescription`), applied per value.

use std::sync::Arc;

use pgshroud_rules::{Action, BYTEA_OID, TEXT_OID};
use zeroize::Zeroizing;

use super::backstop::Backstop;
use super::codec::{self, Spec};
use super::wire::Format;
use crate::crypto::{ColumnCipher, KeyRing};
use crate::ops::metrics::{CryptoOp, Metrics, ProtectedValueAction};
use crate::protocol::error::PgError;

/// One protected result column and the role's read action on it.
#[derive(Debug, Clone)]
pub struct Output {
    pub spec: Spec,
    pub action: Action,
    /// Key of the `hash` mask for the column's context (only for `mask:hash`).
    hash_key: Option<Arc<Zeroizing<[u8; 32]>>>,
    /// Set for a `bytea` result column of no known origin: only the envelopes of key
    /// contexts the role may not receive are touched (sent as NULL); `spec` is a stand-in.
    pub backstop: Option<Arc<Backstop>>,
}

impl Output {
    pub fn new(spec: Spec, action: Action, keys: &KeyRing) -> Output {
        let hash_key = match action {
            Action::Mask(pgshroud_rules::Mask::Hash) => {
                Some(Arc::new(keys.mask_hash_key(&spec.context)))
            }
            _ => None,
        };
        Output {
            spec,
            action,
            hash_key,
            backstop: None,
        }
    }

    /// A `bytea` result column of no known origin, for a role that may not receive the
    /// stored values of the key contexts `backstop` holds (see `backstop.rs`).
    pub fn unmapped(backstop: Arc<Backstop>) -> Output {
        Output {
            spec: backstop.stand_in().clone(),
            action: Action::Null,
            hash_key: None,
            backstop: Some(backstop),
        }
    }

    /// Whether `RowDescription` tells the client another type than the server's.
    pub fn changes_type(&self) -> bool {
        self.backstop.is_none() && !self.passes_stored()
    }

    /// The type the client is told in `RowDescription`.
    pub fn type_oid(&self) -> u32 {
        if self.backstop.is_some() {
            return BYTEA_OID;
        }
        match self.action {
            Action::Mask(_) => TEXT_OID,
            Action::Ciphertext => BYTEA_OID,
            Action::Decrypt | Action::Null | Action::Deny => self.spec.logical.oid(),
        }
    }

    /// `typlen` for `RowDescription`.
    pub fn type_len(&self) -> i16 {
        if self.backstop.is_some() {
            return -1;
        }
        match self.action {
            Action::Mask(_) | Action::Ciphertext => -1,
            _ => self.spec.logical.type_len(),
        }
    }

    /// The type modifier for `RowDescription` (`numeric(12,2)`), -1 when there is none.
    pub fn type_mod(&self) -> i32 {
        if self.backstop.is_some() {
            return -1;
        }
        match (self.action, self.spec.modifier) {
            (Action::Decrypt | Action::Null | Action::Deny, Some(m)) => m.typmod(),
            _ => -1,
        }
    }

    /// Whether the stored value reaches the client as it is (no decryption, no rewrite).
    pub fn passes_stored(&self) -> bool {
        self.action == Action::Ciphertext
    }

    /// The stored value (bytea as the server sent it, in `format`) as the client gets it in
    /// the same format; `None` is SQL NULL.
    pub fn reveal(
        &self,
        cipher: &mut ColumnCipher,
        stored: &[u8],
        format: Format,
    ) -> Result<Option<Vec<u8>>, PgError> {
        match self.action {
            Action::Decrypt => codec::open_opt(&self.spec, cipher, format, stored, format),
            Action::Ciphertext => Ok(Some(stored.to_vec())),
            // Deny never reaches results (the statement is refused); NULL is the safe answer.
            Action::Null | Action::Deny => Ok(None),
            Action::Mask(mask) => {
                let Some(text) = codec::open_opt(&self.spec, cipher, format, stored, Format::Text)?
                else {
                    return Ok(None);
                };
                let text = String::from_utf8(text).unwrap_or_default();
                let key = self
                    .hash_key
                    .as_deref()
                    .map(|k| k.as_slice())
                    .unwrap_or(&[]);
                // text's binary send format is its UTF-8 bytes, so one form serves both.
                Ok(Some(mask.apply(&text, key).into_bytes()))
            }
        }
    }
}

/// Values returned to the client by action, gathered per row and handed to the metrics once
/// per statement (one atomic add per counter instead of one per value).
#[derive(Debug, Default)]
pub struct RevealCounts {
    decrypted: u64,
    masked: u64,
    nulled: u64,
    ciphertext: u64,
}

impl RevealCounts {
    pub fn count(&mut self, action: Action) {
        match action {
            Action::Decrypt => self.decrypted += 1,
            Action::Mask(_) => self.masked += 1,
            Action::Null | Action::Deny => self.nulled += 1,
            Action::Ciphertext => self.ciphertext += 1,
        }
    }

    pub fn flush(&mut self, metrics: &Metrics) {
        let counts = std::mem::take(self);
        let decrypted = counts.decrypted + counts.masked;
        if decrypted > 0 {
            metrics.crypto_operations(CryptoOp::Decrypt, decrypted);
        }
        for (action, n) in [
            (ProtectedValueAction::Decrypted, counts.decrypted),
            (ProtectedValueAction::Masked, counts.masked),
            (ProtectedValueAction::Nulled, counts.nulled),
            (ProtectedValueAction::Ciphertext, counts.ciphertext),
        ] {
            if n > 0 {
                metrics.protected_values(action, n);
            }
        }
    }
}

/// For COPY: a text-format stored field as the client's text field.
pub fn reveal_text(
    output: &Output,
    cipher: &mut ColumnCipher,
    stored: &str,
) -> Result<Option<String>, PgError> {
    let revealed = output.reveal(cipher, stored.as_bytes(), Format::Text)?;
    Ok(revealed.map(|bytes| String::from_utf8(bytes).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyContext, MasterKey};
    use crate::protect::codec::ColumnSpec;
    use pgshroud_rules::{LogicalType, Mask};

    fn fixture() -> (KeyRing, Spec) {
        let ring = KeyRing::single(MasterKey::from_bytes(&[3; 32]).unwrap());
        let spec = Arc::new(ColumnSpec {
            qualified: "public.customers.email".into(),
            logical: LogicalType::Text,
            modifier: None,
            context: KeyContext::for_column("public", "customers", "email"),
        });
        (ring, spec)
    }

    fn stored_text(ring: &KeyRing, spec: &Spec, value: &str) -> String {
        let mut cipher = ring.cipher_for(&spec.context);
        let sealed = codec::seal(spec, &mut cipher, Format::Text, value.as_bytes()).unwrap();
        format!("\\x{}", hex::encode(sealed))
    }

    #[test]
    fn each_action_shapes_the_value_and_its_type() {
        let (ring, spec) = fixture();
        let stored = stored_text(&ring, &spec, "alice@example.com");
        let mut cipher = ring.cipher_for(&spec.context);
        let out = |action| Output::new(spec.clone(), action, &ring);

        let plain = out(Action::Decrypt);
        assert_eq!(plain.type_oid(), LogicalType::Text.oid());
        assert_eq!(
            reveal_text(&plain, &mut cipher, &stored)
                .unwrap()
                .as_deref(),
            Some("alice@example.com")
        );

        let masked = out(Action::Mask(Mask::Email));
        assert_eq!(masked.type_oid(), TEXT_OID);
        let shown = reveal_text(&masked, &mut cipher, &stored).unwrap().unwrap();
        assert!(
            shown.ends_with("@example.com") && !shown.contains("alice"),
            "{shown}"
        );

        let nulled = out(Action::Null);
        assert_eq!(reveal_text(&nulled, &mut cipher, &stored).unwrap(), None);

        let raw = out(Action::Ciphertext);
        assert_eq!(raw.type_oid(), BYTEA_OID);
        assert_eq!(
            reveal_text(&raw, &mut cipher, &stored).unwrap().as_deref(),
            Some(stored.as_str())
        );
    }

    #[test]
    fn hash_mask_is_stable_per_value_and_hides_it() {
        let (ring, spec) = fixture();
        let mut cipher = ring.cipher_for(&spec.context);
        let hashed = Output::new(spec.clone(), Action::Mask(Mask::Hash), &ring);
        let a1 = reveal_text(&hashed, &mut cipher, &stored_text(&ring, &spec, "a@x.org")).unwrap();
        let a2 = reveal_text(&hashed, &mut cipher, &stored_text(&ring, &spec, "a@x.org")).unwrap();
        let b = reveal_text(&hashed, &mut cipher, &stored_text(&ring, &spec, "b@x.org")).unwrap();
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert!(!a1.unwrap().contains("a@x.org"));
    }
}
