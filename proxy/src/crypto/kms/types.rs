//! What a KMS-wrapped master key is configured with, what can go wrong, and who hears of each
//! call (the metrics). Nothing here holds key material.

use std::fmt;
use std::path::PathBuf;

/// A master key wrapped by a KMS key (`kms_key_id` + `wrapped` or `wrapped_file` in `[[keys]]`).
#[derive(Clone, PartialEq, Eq)]
pub struct KmsKey {
    /// The KMS key's ARN, key id or alias (`alias/...`); `Decrypt` is asked to use exactly it.
    pub key_id: String,
    pub wrapped: WrappedKey,
    /// Another KMS endpoint (a VPC endpoint, a local KMS-compatible server); else the standard
    /// resolution (`AWS_ENDPOINT_URL_KMS`, `AWS_ENDPOINT_URL`, the region's endpoint).
    pub endpoint: Option<String>,
    /// The region; else `AWS_REGION` / the profile's.
    pub region: Option<String>,
}

/// Where the wrapped blob is: base64 text in the keys file, or a file holding it (base64 text
/// or the raw bytes `aws kms generate-data-key --query CiphertextBlob` writes after decoding).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum WrappedKey {
    Inline(String),
    File(PathBuf),
}

impl fmt::Display for KmsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KMS key {}", self.key_id)
    }
}

impl fmt::Debug for KmsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KmsKey({})", self.key_id)
    }
}

/// The KMS API operations pgshroud calls (`kms_calls_total{operation}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KmsOperation {
    /// Asked before `Decrypt`, so a disabled or deleted key is named as such.
    DescribeKey,
    Decrypt,
    GenerateDataKey,
}

impl KmsOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            KmsOperation::DescribeKey => "describe_key",
            KmsOperation::Decrypt => "decrypt",
            KmsOperation::GenerateDataKey => "generate_data_key",
        }
    }
}

/// Why a KMS call failed, in the operator's terms. The texts carry KMS's own message (ARNs,
/// states), never key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KmsFailure {
    #[error("KMS unreachable ({0})")]
    Unreachable(String),
    #[error("no AWS credentials found (environment, profile, web identity, container or instance metadata): {0}")]
    CredentialsMissing(String),
    #[error("KMS refused the credentials: {0}")]
    CredentialsRejected(String),
    #[error("no AWS region: set kms_region in the [[keys]] entry, or AWS_REGION")]
    NoRegion,
    #[error("the KMS key does not exist: {0}")]
    KeyNotFound(String),
    #[error("the KMS key is {0}, not Enabled: enable it (or restore it) in KMS")]
    KeyNotEnabled(String),
    #[error("KMS denied the request: {0}")]
    AccessDenied(String),
    #[error("the wrapped key was not made by this KMS key, or is damaged: {0}")]
    WrongKey(String),
    #[error("KMS answered without the key it should hold")]
    EmptyAnswer,
    #[error("KMS error: {0}")]
    Other(String),
}

/// A KMS-wrapped master key that did not load; names the KMS key, never the blob or the key.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("cannot read wrapped key file {}: {source}", path.display())]
    WrappedRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the wrapped key of KMS key {key_id} is not base64 (write what `pgshroud keygen --kms-key-id` printed)")]
    WrappedFormat { key_id: String },
    /// Shown after the key's name ("key version 2 (KMS key ARN): ..."), so it does not repeat it.
    #[error("{failure}")]
    Call {
        key_id: String,
        operation: KmsOperation,
        failure: KmsFailure,
    },
    #[error("cannot start the KMS client: {reason}")]
    Runtime { key_id: String, reason: String },
}

/// Hears of every KMS call and its outcome (the proxy's metrics; nothing in the CLI).
pub trait KmsObserver: Sync {
    fn kms_call(&self, operation: KmsOperation, failure: Option<&KmsFailure>);
}

/// For callers without metrics.
pub struct NoKmsObserver;

impl KmsObserver for NoKmsObserver {
    fn kms_call(&self, _operation: KmsOperation, _failure: Option<&KmsFailure>) {}
}
