//! Master keys kept wrapped by an AWS KMS key: the wrapped blob (a KMS ciphertext of the 32
//! key bytes, from `GenerateDataKey`) sits in the keys file or a file of its own, and KMS
//! `Decrypt` unwraps it at start-up and on reload only, never per value.
//!
//! `types` holds the configuration and the errors (which name the KMS key and the reason,
//! never key material); `client` makes the calls through the official SDK on a thread of its
//! own, so a caller on a runtime worker or inside another runtime never blocks it or nests one.

mod client;
mod types;

pub use client::{generate_wrapped_key, unwrap};
pub use types::{
    KmsError, KmsFailure, KmsKey, KmsObserver, KmsOperation, NoKmsObserver, WrappedKey,
};
