//! `*` patterns for user names, PostgreSQL roles and certificate subjects.

/// A pattern where `*` matches any run of characters (also none); everything else matches
/// itself, case-sensitively, as PostgreSQL role names and certificate subjects compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// `None` for an empty pattern or one with control characters: neither can be meant.
    pub fn new(pattern: &str) -> Option<Glob> {
        if pattern.is_empty() || pattern.chars().any(char::is_control) {
            return None;
        }
        Some(Glob(pattern.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` matches. Linear-time greedy matching with one backtrack point, so a
    /// hostile user name cannot make matching slow.
    pub fn matches(&self, text: &str) -> bool {
        let pattern: Vec<char> = self.0.chars().collect();
        let text: Vec<char> = text.chars().collect();
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            if p < pattern.len() && pattern[p] == '*' {
                star = Some((p, t));
                p += 1;
            } else if p < pattern.len() && pattern[p] == text[t] {
                p += 1;
                t += 1;
            } else if let Some((star_p, star_t)) = star {
                p = star_p + 1;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            } else {
                return false;
            }
        }
        pattern[p..].iter().all(|&c| c == '*')
    }
}

impl std::fmt::Display for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).expect("valid pattern").matches(text)
    }

    #[test]
    fn literal_pattern_matches_only_itself() {
        assert!(matches("app", "app"));
        assert!(!matches("app", "app2"));
        assert!(!matches("app", "App"));
    }

    #[test]
    fn star_matches_any_run_including_empty() {
        assert!(matches("support_*", "support_"));
        assert!(matches("support_*", "support_alice"));
        assert!(!matches("support_*", "support"));
        assert!(matches("*", ""));
        assert!(matches("*@example.com", "alice@example.com"));
        assert!(matches("CN=*,O=Shop*", "CN=app,O=Shop Ltd"));
        assert!(matches("a*b*c", "aXbYbZc"));
        assert!(!matches("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn empty_and_control_patterns_are_refused() {
        assert_eq!(Glob::new(""), None);
        assert_eq!(Glob::new("a\nb"), None);
    }
}
