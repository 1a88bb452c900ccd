//! AWS KMS calls and their failures: the key loads at start-up and reload tell the metrics of
//! each call through [`KmsObserver`].

use super::{KmsCall, KmsFailureReason, Metrics};
use crate::crypto::kms::{KmsFailure, KmsObserver, KmsOperation};

impl KmsObserver for Metrics {
    fn kms_call(&self, operation: KmsOperation, failure: Option<&KmsFailure>) {
        let call = match operation {
            KmsOperation::DescribeKey => KmsCall::DescribeKey,
            KmsOperation::Decrypt => KmsCall::Decrypt,
            // The proxy never generates keys (`pgshroud keygen` does, in its own process).
            KmsOperation::GenerateDataKey => return,
        };
        self.kms_calls.add(call, 1);
        if let Some(failure) = failure {
            self.kms_failures.add(failure_reason(failure), 1);
        }
    }
}

fn failure_reason(failure: &KmsFailure) -> KmsFailureReason {
    match failure {
        KmsFailure::Unreachable(_) => KmsFailureReason::Unreachable,
        KmsFailure::CredentialsMissing(_) => KmsFailureReason::CredentialsMissing,
        KmsFailure::CredentialsRejected(_) => KmsFailureReason::CredentialsRejected,
        KmsFailure::NoRegion => KmsFailureReason::NoRegion,
        KmsFailure::KeyNotFound(_) => KmsFailureReason::KeyNotFound,
        KmsFailure::KeyNotEnabled(_) => KmsFailureReason::KeyNotEnabled,
        KmsFailure::AccessDenied(_) => KmsFailureReason::AccessDenied,
        KmsFailure::WrongKey(_) => KmsFailureReason::WrongKey,
        KmsFailure::EmptyAnswer | KmsFailure::Other(_) => KmsFailureReason::Other,
    }
}
