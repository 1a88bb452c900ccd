//! A rules file as text through the rules parser and validator, and what `pgshroud check`
//! prints for it; then the spellings inside it (actions, masks, globs, networks) on their
//! own: each that parses must print back to a spelling that parses to the same thing, and
//! masks must accept any text a database can hand them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgshroud::protect::engine::{GuardPolicy, Protection};
use pgshroud_fuzz::key_ring;
use pgshroud_rules::{check_report, Action, Glob, Identity, Mask, Network};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rules) = pgshroud_rules::parse(text, "fuzz.toml") {
        check_report(&rules);
        let who = Identity {
            user: text,
            pg_roles: &[],
            cert_subject: Some(text),
        };
        rules.role_for(&who);
        Protection::new(rules, key_ring(), GuardPolicy::Required);
    }
    let (spec, value) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(action) = Action::parse(spec) {
        assert_eq!(Action::parse(&action.to_string()), Ok(action));
    }
    if let Ok(mask) = Mask::parse(spec) {
        assert_eq!(Mask::parse(&mask.to_string()), Ok(mask));
        mask.apply(value, b"fuzz hash key");
    }
    if let Some(glob) = Glob::new(spec) {
        glob.matches(value);
    }
    if let Ok(network) = Network::parse(spec) {
        assert_eq!(Network::parse(&network.to_string()), Ok(network));
    }
});
