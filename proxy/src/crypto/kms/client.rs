//! The KMS calls, through the official SDK (SigV4, the standard credential chain, retries).
//!
//! Every call runs on a scoped thread with a current-thread runtime of its own: loads happen
//! at start-up and reload, from code that is already blocking (a `spawn_blocking` thread, the
//! start-up path, a CLI command inside its own runtime), and a thread of its own means no
//! runtime worker waits on KMS and no runtime is started inside another.

use std::future::Future;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyState};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

use super::types::{KmsError, KmsFailure, KmsKey, KmsObserver, KmsOperation, WrappedKey};
use crate::crypto::MasterKey;

/// Generous for a remote KMS, short enough that a start-up or reload that cannot reach KMS
/// says so within seconds (the SDK retries transient failures three times within this).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// Unwraps the master key: `DescribeKey` (a disabled or deleted key is named as such; a role
/// without that permission goes on to `Decrypt`, which refuses such keys itself), then
/// `Decrypt` of the wrapped blob with the configured key id. Blocking.
pub fn unwrap(key: &KmsKey, observer: &dyn KmsObserver) -> Result<MasterKey, KmsError> {
    let blob = wrapped_bytes(key)?;
    on_own_runtime(&key.key_id, async {
        let client = client(key.endpoint.as_deref(), key.region.as_deref())
            .await
            .map_err(|failure| call_error(key, KmsOperation::DescribeKey, failure))?;
        check_state(&client, key, observer).await?;
        let answer = client
            .decrypt()
            .key_id(&key.key_id)
            .ciphertext_blob(Blob::new(blob))
            .send()
            .await;
        let answer = observed(observer, KmsOperation::Decrypt, answer.map_err(classify))
            .map_err(|failure| call_error(key, KmsOperation::Decrypt, failure))?;
        let plaintext = Zeroizing::new(
            answer
                .plaintext
                .map(Blob::into_inner)
                .ok_or_else(|| call_error(key, KmsOperation::Decrypt, KmsFailure::EmptyAnswer))?,
        );
        MasterKey::from_bytes(&plaintext).map_err(|e| {
            call_error(
                key,
                KmsOperation::Decrypt,
                KmsFailure::Other(format!(
                    "the unwrapped key is not a pgshroud master key: {e}"
                )),
            )
        })
    })
}

/// `GenerateDataKey` (AES_256) under `key_id`: returns the wrapped blob as base64. The plaintext
/// KMS also returns is zeroed at once and never shown. Blocking.
pub fn generate_wrapped_key(
    key_id: &str,
    endpoint: Option<&str>,
    region: Option<&str>,
) -> Result<String, KmsError> {
    let failed = |failure| KmsError::Call {
        key_id: key_id.to_owned(),
        operation: KmsOperation::GenerateDataKey,
        failure,
    };
    on_own_runtime(key_id, async {
        let client = client(endpoint, region).await.map_err(failed)?;
        let answer = client
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await
            .map_err(|e| failed(classify(e)))?;
        let plaintext = Zeroizing::new(answer.plaintext.map(Blob::into_inner).unwrap_or_default());
        if plaintext.len() != crate::crypto::master_key::MASTER_KEY_LEN {
            return Err(failed(KmsFailure::Other(format!(
                "KMS returned a data key of {} bytes, expected 32",
                plaintext.len()
            ))));
        }
        let wrapped = answer
            .ciphertext_blob
            .ok_or_else(|| failed(KmsFailure::EmptyAnswer))?;
        Ok(STANDARD.encode(wrapped.as_ref()))
    })
}

async fn check_state(
    client: &aws_sdk_kms::Client,
    key: &KmsKey,
    observer: &dyn KmsObserver,
) -> Result<(), KmsError> {
    let answer = client.describe_key().key_id(&key.key_id).send().await;
    let failure = match answer.map_err(classify) {
        Ok(described) => {
            observer.kms_call(KmsOperation::DescribeKey, None);
            let state = described.key_metadata.and_then(|m| m.key_state);
            match state {
                None | Some(KeyState::Enabled) => return Ok(()),
                Some(state) => KmsFailure::KeyNotEnabled(state.as_str().to_owned()),
            }
        }
        // Describing is a courtesy: without kms:DescribeKey, Decrypt still decides.
        Err(KmsFailure::AccessDenied(_)) => {
            observer.kms_call(KmsOperation::DescribeKey, None);
            return Ok(());
        }
        Err(failure) => failure,
    };
    observer.kms_call(KmsOperation::DescribeKey, Some(&failure));
    Err(call_error(key, KmsOperation::DescribeKey, failure))
}

fn observed<T>(
    observer: &dyn KmsObserver,
    operation: KmsOperation,
    result: Result<T, KmsFailure>,
) -> Result<T, KmsFailure> {
    observer.kms_call(operation, result.as_ref().err());
    result
}

fn call_error(key: &KmsKey, operation: KmsOperation, failure: KmsFailure) -> KmsError {
    KmsError::Call {
        key_id: key.key_id.clone(),
        operation,
        failure,
    }
}

/// The wrapped blob's bytes: base64 text, inline or in a file (a file may also hold raw bytes).
fn wrapped_bytes(key: &KmsKey) -> Result<Vec<u8>, KmsError> {
    let not_base64 = || KmsError::WrappedFormat {
        key_id: key.key_id.clone(),
    };
    match &key.wrapped {
        WrappedKey::Inline(text) => STANDARD.decode(text.trim()).map_err(|_| not_base64()),
        WrappedKey::File(path) => {
            let bytes = std::fs::read(path).map_err(|source| KmsError::WrappedRead {
                path: path.clone(),
                source,
            })?;
            match std::str::from_utf8(&bytes) {
                Ok(text) => STANDARD.decode(text.trim()).map_err(|_| not_base64()),
                Err(_) => Ok(bytes),
            }
        }
    }
}

/// A KMS client from the standard chain (environment, profile, web identity, container, instance
/// metadata), over rustls with ring, with our timeouts and the optional endpoint and region.
async fn client(
    endpoint: Option<&str>,
    region: Option<&str>,
) -> Result<aws_sdk_kms::Client, KmsFailure> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        );
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return Err(KmsFailure::NoRegion);
    }
    let mut config = aws_sdk_kms::config::Builder::from(&shared);
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint);
    }
    Ok(aws_sdk_kms::Client::from_conf(config.build()))
}

/// KMS's answer in the operator's terms; the texts are KMS's or the SDK's (no key material).
fn classify<E, R>(error: SdkError<E, R>) -> KmsFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if let Some(credentials) = find_source::<CredentialsError>(&error) {
        return KmsFailure::CredentialsMissing(credentials.to_string());
    }
    let text = || DisplayErrorContext(&error).to_string();
    match &error {
        SdkError::TimeoutError(_) => KmsFailure::Unreachable("no answer in time".into()),
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            KmsFailure::Unreachable(deepest(&error))
        }
        SdkError::ServiceError(service) => {
            let err = service.err();
            let message = err.message().unwrap_or("no detail").to_owned();
            match err.code().unwrap_or("") {
                "NotFoundException" => KmsFailure::KeyNotFound(message),
                "DisabledException" => KmsFailure::KeyNotEnabled("Disabled".into()),
                "KMSInvalidStateException" => {
                    KmsFailure::KeyNotEnabled(format!("in a state that refuses this ({message})"))
                }
                "AccessDeniedException" => KmsFailure::AccessDenied(message),
                "IncorrectKeyException" | "InvalidCiphertextException" => {
                    KmsFailure::WrongKey(message)
                }
                "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "ExpiredTokenException"
                | "InvalidClientTokenId" => KmsFailure::CredentialsRejected(message),
                code => KmsFailure::Other(format!("{code}: {message}")),
            }
        }
        _ => KmsFailure::Other(text()),
    }
}

/// The innermost cause ("Connection refused (os error 111)"), without the SDK's wrappers.
fn deepest(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn find_source<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<T>() {
            return Some(found);
        }
        next = current.source();
    }
    None
}

/// Runs `work` to completion on a scoped thread with a current-thread runtime of its own.
fn on_own_runtime<T: Send>(
    key_id: &str,
    work: impl Future<Output = Result<T, KmsError>> + Send,
) -> Result<T, KmsError> {
    let runtime_error = |reason: String| KmsError::Runtime {
        key_id: key_id.to_owned(),
        reason,
    };
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| runtime_error(e.to_string()))?;
            runtime.block_on(work)
        });
        handle
            .join()
            .unwrap_or_else(|_| Err(runtime_error("the KMS call panicked".into())))
    })
}
