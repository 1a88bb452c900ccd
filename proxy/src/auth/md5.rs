//! PostgreSQL's md5 password method, for roles whose secret is still an md5 hash: the secret
//! itself answers any md5 challenge (`md5` + md5(hex secret || salt)), so the proxy can check a
//! client's answer and answer the server's challenge without the password.

use md5::{Digest, Md5};
use zeroize::Zeroizing;

/// `md5` + 32 lowercase hex digits of md5(password || user name), as in `pg_authid`.
pub struct Md5Secret(Zeroizing<String>);

/// Never prints the secret.
impl std::fmt::Debug for Md5Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Md5Secret(..)")
    }
}

impl Md5Secret {
    pub fn parse(text: &str) -> Option<Md5Secret> {
        let hex = text.strip_prefix("md5")?;
        (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Md5Secret(Zeroizing::new(text.to_ascii_lowercase())))
    }

    /// The secret of `password` for `user`.
    pub fn from_password(password: &[u8], user: &str) -> Md5Secret {
        let mut hasher = Md5::new();
        hasher.update(password);
        hasher.update(user.as_bytes());
        Md5Secret(Zeroizing::new(format!(
            "md5{}",
            hex::encode(hasher.finalize())
        )))
    }

    /// The PasswordMessage text that answers a challenge with `salt`.
    pub fn answer(&self, salt: &[u8; 4]) -> Zeroizing<String> {
        let mut hasher = Md5::new();
        hasher.update(&self.0.as_bytes()[3..]);
        hasher.update(salt);
        Zeroizing::new(format!("md5{}", hex::encode(hasher.finalize())))
    }

    /// Whether a client's answer to `salt` is right (compared in constant time).
    pub fn check(&self, salt: &[u8; 4], answer: &[u8]) -> bool {
        let expected = self.answer(salt);
        expected.len() == answer.len()
            && expected
                .bytes()
                .zip(answer)
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    }

    /// Whether `password` is this secret's password (cleartext clients).
    pub fn matches_password(&self, password: &[u8], user: &str) -> bool {
        let other = Md5Secret::from_password(password, user);
        self.check(&[0; 4], other.answer(&[0; 4]).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_answers_challenges_like_the_password_would() {
        // md5("md5-secret" || "md5_user"), as PostgreSQL stores it.
        let secret = Md5Secret::from_password(b"md5-secret", "md5_user");
        let parsed = Md5Secret::parse(&secret.0).unwrap();
        let salt = [1, 2, 3, 4];
        assert!(parsed.check(&salt, secret.answer(&salt).as_bytes()));
        assert!(!parsed.check(&[4, 3, 2, 1], secret.answer(&salt).as_bytes()));
        assert!(parsed.matches_password(b"md5-secret", "md5_user"));
        assert!(!parsed.matches_password(b"md5-secret", "other_user"));
        assert!(Md5Secret::parse("md5xyz").is_none());
        assert!(Md5Secret::parse("SCRAM-SHA-256$4096:c2FsdA==$a:b").is_none());
        assert_eq!(format!("{parsed:?}"), "Md5Secret(..)");
    }
}
