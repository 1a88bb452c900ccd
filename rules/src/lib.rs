//! The rules model: which columns are protected and what each role sees. Filled in by the encrypted-columns issue.
