//! `ColumnCipher`: seals and opens the values of one key context with AES-256-SIV, picking the
//! column key by the envelope's key version. This is the per-value hot path: no key derivation.
//!
//! A per-tenant context's cipher seals with one tenant's keys (format 3, the session's tenant)
//! and opens the format-3 values of any tenant, finding the tenant by the envelope's tag
//! through a [`TenantKeyLookup`] (the tenant key store).

use std::fmt;
use std::sync::Arc;

use aes_siv::siv::Aes256Siv;
use aes_siv::{KeyInit as _, Tag};

use super::column_key::{ColumnKey, KeyContext};
use super::envelope::{
    self, Envelope, EnvelopeError, KeyVersion, CONTEXT_TAG_LEN, TAG_LEN, TENANT_TAG_LEN,
};

/// Why a stored value could not be opened. Never carries stored or plaintext bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("stored value of key context {context} uses key version {version}, which is not a live key version")]
    UnknownKeyVersion {
        context: KeyContext,
        version: KeyVersion,
    },
    #[error("stored value of key context {context} does not decrypt: wrong master key, a value from another column, or tampered")]
    Decrypt { context: KeyContext },
    #[error("stored value was sealed for another key context than {context}: a value from another column")]
    OtherContext { context: KeyContext },
    #[error("stored value of key context {context} was sealed with a shared key where a tenant key belongs, or the other way round")]
    Tenancy { context: KeyContext },
    #[error("stored value of key context {context} belongs to a tenant whose key was destroyed (forgotten)")]
    ForgottenTenant { context: KeyContext },
    #[error("stored value of key context {context} belongs to a tenant the tenant key store does not know")]
    UnknownTenant { context: KeyContext },
}

/// Why a tenant's column key is not available for a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantOpenError {
    /// The tenant's key file is a tombstone.
    Forgotten,
    /// No tenant with this tag in the store.
    Unknown,
    /// The tenant has no such key version.
    UnknownVersion,
}

/// Finds the column key of a tenant by its envelope tag (the tenant key store).
pub trait TenantKeyLookup: Send + Sync {
    fn column_key(
        &self,
        tag: &[u8; TENANT_TAG_LEN],
        version: KeyVersion,
        context: &KeyContext,
    ) -> Result<(Arc<str>, Arc<ColumnKey>), TenantOpenError>;

    /// Whether a forgotten tenant's value reads as NULL (else the read is refused).
    fn forgotten_as_null(&self) -> bool;
}

/// The ciphers of one key context: the active key version (used to seal) and every other
/// live version (only to open, and to match equality during a rotation).
///
/// Cheap to clone: the column keys are shared; each clone builds its own AES-SIV instance
/// on first use (sealing needs `&mut`), so clones on different tasks never contend.
#[derive(Clone)]
pub struct ColumnCipher {
    context: KeyContext,
    /// The context's tag, written into every envelope (computed once: it is a hash).
    context_tag: [u8; CONTEXT_TAG_LEN],
    active: VersionedCipher,
    others: Vec<VersionedCipher>,
    /// Set for a per-tenant context: `active`/`others` are then the sealing tenant's keys.
    tenancy: Option<Tenancy>,
}

/// The per-tenant side of a cipher.
#[derive(Clone)]
struct Tenancy {
    /// The tenant whose keys `active`/`others` are, with its tag; `None`: open only.
    sealing: Option<(Arc<str>, [u8; TENANT_TAG_LEN])>,
    lookup: Arc<dyn TenantKeyLookup>,
    /// Other tenants' ciphers built while reading, by (tag, version); bounded.
    opened: Vec<([u8; TENANT_TAG_LEN], Arc<str>, VersionedCipher)>,
}

/// A tenant, its active column key and its other live versions' (the sealing side of a
/// per-tenant cipher).
pub type TenantSealing = (
    Arc<str>,
    (KeyVersion, Arc<ColumnKey>),
    Vec<(KeyVersion, Arc<ColumnKey>)>,
);

/// Other tenants' ciphers a cipher keeps; beyond this they are dropped and rebuilt.
const OPENED_LIMIT: usize = 64;

impl ColumnCipher {
    /// `active` seals; `others` are older (or newer) live versions that may still be read.
    pub(super) fn new(
        context: KeyContext,
        active: (KeyVersion, Arc<ColumnKey>),
        others: Vec<(KeyVersion, Arc<ColumnKey>)>,
    ) -> ColumnCipher {
        ColumnCipher {
            context_tag: envelope::context_tag(context.as_str()),
            context,
            active: VersionedCipher::new(active),
            others: others.into_iter().map(VersionedCipher::new).collect(),
            tenancy: None,
        }
    }

    /// A per-tenant context's cipher. With `sealing` (a tenant, its active key and other live
    /// versions) it seals format 3 for that tenant; without, it only opens, and must not seal
    /// (its active key is a random one nothing was sealed with).
    pub(super) fn per_tenant(
        context: KeyContext,
        sealing: Option<TenantSealing>,
        lookup: Arc<dyn TenantKeyLookup>,
    ) -> ColumnCipher {
        let (sealing, active, others) = match sealing {
            Some((tenant, active, others)) => {
                let tag = envelope::tenant_tag(&tenant);
                (Some((tenant, tag)), active, others)
            }
            None => (
                None,
                (KeyVersion::new(0), Arc::new(ColumnKey::random())),
                Vec::new(),
            ),
        };
        let mut cipher = ColumnCipher::new(context, active, others);
        cipher.tenancy = Some(Tenancy {
            sealing,
            lookup,
            opened: Vec::new(),
        });
        cipher
    }

    pub fn context(&self) -> &KeyContext {
        &self.context
    }

    /// Whether this cipher may seal: a shared context's always, a per-tenant context's only
    /// with a tenant.
    pub fn seals(&self) -> bool {
        self.tenancy.as_ref().is_none_or(|t| t.sealing.is_some())
    }

    /// Whether a forgotten tenant's value reads as NULL (the store's setting); shared
    /// contexts have no tenants, so the question does not arise (`false`).
    pub fn forgotten_as_null(&self) -> bool {
        self.tenancy
            .as_ref()
            .is_some_and(|t| t.lookup.forgotten_as_null())
    }

    /// The tenant this cipher seals for (per-tenant contexts only).
    pub fn sealing_tenant(&self) -> Option<&str> {
        self.tenancy.as_ref()?.sealing.as_ref().map(|(t, _)| &**t)
    }

    /// The key version new values are sealed with.
    pub fn active_version(&self) -> KeyVersion {
        self.active.version
    }

    /// Every version this cipher can open, the active one first.
    pub fn live_versions(&self) -> impl Iterator<Item = KeyVersion> + '_ {
        self.versioned().map(|cipher| cipher.version)
    }

    /// Encrypts canonical plaintext bytes into a new envelope with the active key version.
    pub fn seal(&mut self, canonical_plaintext: &[u8]) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(envelope::V3_CIPHERTEXT_OFFSET + canonical_plaintext.len());
        self.seal_into(canonical_plaintext, &mut out);
        out
    }

    /// Like [`seal`](Self::seal), appending the envelope to `out` (e.g. a message being built).
    pub fn seal_into(&mut self, canonical_plaintext: &[u8], out: &mut Vec<u8>) {
        debug_assert!(
            self.seals(),
            "an open-only per-tenant cipher was asked to seal"
        );
        let (header, tenant) = self.header();
        let ad = self.context.associated_data();
        let ads: &[&[u8]] = match &tenant {
            Some(t) => &[ad, t.as_bytes()],
            None => &[ad],
        };
        self.active
            .seal_into(ads, &header, canonical_plaintext, out);
    }

    /// The envelope of the plaintext under every live version, active first: what an equality
    /// predicate must match (`col IN (...)`) while a rotation is re-encrypting old rows.
    pub fn seal_all_versions(&mut self, canonical_plaintext: &[u8]) -> Vec<Vec<u8>> {
        let (header, tenant) = self.header();
        let ad = self.context.associated_data();
        let ads: &[&[u8]] = match &tenant {
            Some(t) => &[ad, t.as_bytes()],
            None => &[ad],
        };
        std::iter::once(&mut self.active)
            .chain(self.others.iter_mut())
            .map(|cipher| {
                let mut out = Vec::with_capacity(header.len() + canonical_plaintext.len());
                cipher.seal_into(ads, &header, canonical_plaintext, &mut out);
                out
            })
            .collect()
    }

    /// The header new envelopes get, and the tenant id sealed as associated data.
    fn header(&self) -> (Header, Option<Arc<str>>) {
        match &self.tenancy {
            None => (Header::V2(self.context_tag), None),
            Some(t) => {
                let (tenant, tag) = t
                    .sealing
                    .clone()
                    .unwrap_or_else(|| (Arc::from(""), [0; TENANT_TAG_LEN]));
                (Header::V3(self.context_tag, tag), Some(tenant))
            }
        }
    }

    /// Decrypts stored bytes with the key version named in their envelope.
    pub fn open(&mut self, stored: &[u8]) -> Result<Vec<u8>, OpenError> {
        let envelope = Envelope::parse(stored)?;
        let context = &self.context;
        if envelope
            .context_tag
            .is_some_and(|tag| *tag != self.context_tag)
        {
            return Err(OpenError::OtherContext {
                context: context.clone(),
            });
        }
        let tenancy = match (&mut self.tenancy, envelope.tenant_tag) {
            (None, None) => None,
            (Some(tenancy), Some(tag)) => Some((tenancy, tag)),
            _ => {
                return Err(OpenError::Tenancy {
                    context: context.clone(),
                })
            }
        };
        let (cipher, tenant) = match tenancy {
            None => (
                find_version(&mut self.active, &mut self.others, envelope.key_version),
                None,
            ),
            Some((tenancy, tag)) => match &tenancy.sealing {
                Some((tenant, own)) if own == tag => (
                    find_version(&mut self.active, &mut self.others, envelope.key_version),
                    Some(tenant.clone()),
                ),
                _ => {
                    let (tenant, cipher) =
                        tenancy.other_tenant(tag, envelope.key_version, context)?;
                    (Some(cipher), Some(tenant))
                }
            },
        };
        let cipher = cipher.ok_or_else(|| OpenError::UnknownKeyVersion {
            context: context.clone(),
            version: envelope.key_version,
        })?;
        let ad = context.associated_data();
        let opened = match &tenant {
            Some(t) => cipher.open(&[ad, t.as_bytes()], &envelope),
            None => cipher.open(&[ad], &envelope),
        };
        opened.ok_or_else(|| OpenError::Decrypt {
            context: context.clone(),
        })
    }

    fn versioned(&self) -> impl Iterator<Item = &VersionedCipher> {
        std::iter::once(&self.active).chain(self.others.iter())
    }

    /// Whether both ciphers hold the very same column keys (not merely equal ones).
    #[cfg(test)]
    pub(super) fn shares_keys_with(&self, other: &ColumnCipher) -> bool {
        self.versioned()
            .zip(other.versioned())
            .all(|(a, b)| Arc::ptr_eq(&a.key, &b.key))
    }
}

fn find_version<'a>(
    active: &'a mut VersionedCipher,
    others: &'a mut [VersionedCipher],
    version: KeyVersion,
) -> Option<&'a mut VersionedCipher> {
    std::iter::once(active)
        .chain(others.iter_mut())
        .find(|cipher| cipher.version == version)
}

impl Tenancy {
    /// The cipher of another tenant's value (by tag and version), built once and kept.
    fn other_tenant(
        &mut self,
        tag: &[u8; TENANT_TAG_LEN],
        version: KeyVersion,
        context: &KeyContext,
    ) -> Result<(Arc<str>, &mut VersionedCipher), OpenError> {
        let at = self
            .opened
            .iter()
            .position(|(t, _, c)| t == tag && c.version == version);
        let at = match at {
            Some(at) => at,
            None => {
                let (tenant, key) =
                    self.lookup
                        .column_key(tag, version, context)
                        .map_err(|e| match e {
                            TenantOpenError::Forgotten => OpenError::ForgottenTenant {
                                context: context.clone(),
                            },
                            TenantOpenError::Unknown => OpenError::UnknownTenant {
                                context: context.clone(),
                            },
                            TenantOpenError::UnknownVersion => OpenError::UnknownKeyVersion {
                                context: context.clone(),
                                version,
                            },
                        })?;
                if self.opened.len() >= OPENED_LIMIT {
                    self.opened.clear();
                }
                self.opened
                    .push((*tag, tenant, VersionedCipher::new((version, key))));
                self.opened.len() - 1
            }
        };
        let (_, tenant, cipher) = &mut self.opened[at];
        Ok((tenant.clone(), cipher))
    }
}

/// Shows the context and versions; keys and cipher state stay out.
impl fmt::Debug for ColumnCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColumnCipher")
            .field("context", &self.context)
            .field("active_version", &self.active.version)
            .field("live_versions", &self.live_versions().collect::<Vec<_>>())
            .finish()
    }
}

/// The header of a new envelope: format 2 (shared keys) or 3 (a tenant's key).
enum Header {
    V2([u8; CONTEXT_TAG_LEN]),
    V3([u8; CONTEXT_TAG_LEN], [u8; TENANT_TAG_LEN]),
}

impl Header {
    /// Header length including the SIV: where the ciphertext starts.
    fn len(&self) -> usize {
        match self {
            Header::V2(_) => envelope::CIPHERTEXT_OFFSET,
            Header::V3(..) => envelope::V3_CIPHERTEXT_OFFSET,
        }
    }

    fn push(&self, out: &mut Vec<u8>, version: KeyVersion) {
        match self {
            Header::V2(tag) => envelope::push_header(out, version, tag),
            Header::V3(tag, tenant) => envelope::push_header_v3(out, version, tag, tenant),
        }
    }
}

/// One column key of one version, with its AES-SIV instance built lazily.
pub(super) struct VersionedCipher {
    version: KeyVersion,
    key: Arc<ColumnKey>,
    siv: Option<Aes256Siv>,
}

impl VersionedCipher {
    fn new((version, key): (KeyVersion, Arc<ColumnKey>)) -> VersionedCipher {
        VersionedCipher {
            version,
            key,
            siv: None,
        }
    }

    fn siv(&mut self) -> &mut Aes256Siv {
        let key = &self.key;
        self.siv
            .get_or_insert_with(|| Aes256Siv::new(key.as_bytes().into()))
    }

    fn seal_into(&mut self, ad: &[&[u8]], header: &Header, plaintext: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        header.push(out, self.version);
        let body_at = start + header.len();
        out.extend_from_slice(plaintext);
        let body = &mut out[body_at..];
        let tag = self.siv().encrypt_inout_detached(ad, body.into()).expect(
            "AES-SIV refuses only more than 126 associated-data elements; we pass two at most",
        );
        out[body_at - TAG_LEN..body_at].copy_from_slice(&tag);
    }

    /// `None` when authentication fails; the caller names the context.
    fn open(&mut self, ad: &[&[u8]], envelope: &Envelope<'_>) -> Option<Vec<u8>> {
        let mut plaintext = envelope.ciphertext.to_vec();
        let tag = Tag::from(*envelope.tag);
        self.siv()
            .decrypt_inout_detached(ad, plaintext.as_mut_slice().into(), &tag)
            .ok()?;
        Some(plaintext)
    }
}

/// Known-answer tests (Wycheproof) with raw keys and arbitrary associated data, through the
/// same code as `seal_into` / `open`. Both take and give `SIV || ciphertext`, without header.
#[cfg(test)]
impl VersionedCipher {
    pub(super) fn seal_raw(key: ColumnKey, ad: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut cipher = VersionedCipher::new((KeyVersion::INITIAL, Arc::new(key)));
        let mut out = Vec::new();
        let header = Header::V2([0; CONTEXT_TAG_LEN]);
        cipher.seal_into(&[ad], &header, msg, &mut out);
        out.split_off(envelope::TAG_OFFSET)
    }

    pub(super) fn open_raw(key: ColumnKey, ad: &[u8], siv_and_ct: &[u8]) -> Option<Vec<u8>> {
        let mut cipher = VersionedCipher::new((KeyVersion::INITIAL, Arc::new(key)));
        let mut stored = Vec::new();
        envelope::push_header(&mut stored, KeyVersion::INITIAL, &[0; CONTEXT_TAG_LEN]);
        stored.truncate(envelope::TAG_OFFSET);
        stored.extend_from_slice(siv_and_ct);
        let envelope = Envelope::parse(&stored).ok()?;
        cipher.open(&[ad], &envelope)
    }
}

/// A clone shares the key and builds its own AES-SIV instance when first used.
impl Clone for VersionedCipher {
    fn clone(&self) -> VersionedCipher {
        VersionedCipher::new((self.version, Arc::clone(&self.key)))
    }
}

#[cfg(test)]
#[path = "cipher_tests.rs"]
mod tests;
