//! The `WWW-Authenticate` challenges Berth sends. Their realm comes from the
//! request's `Host` header when none is configured, so an attacker chooses
//! it; whatever the realm, service and scopes, the challenge reads back as
//! exactly those values (no parameter can be smuggled in by quoting).
//!
//! Input: realm, service, scopes and an error flag (`1`), one per line.
#![no_main]

use berth_auth::challenge::{basic_challenge, Challenge, ChallengeError};
use berth_auth::Scope;
use berth_fuzz::parse_challenge;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let mut lines = input.splitn(4, '\n');
    let realm = lines.next().unwrap_or_default();
    let service = lines.next().unwrap_or_default();
    let scope_text = lines.next().unwrap_or_default();
    let with_error = lines.next() == Some("1");
    // Header values cannot hold control characters (hyper refuses them
    // before Berth sees a request), so only printable text is a realm.
    if [realm, service].iter().any(|s| s.chars().any(char::is_control)) {
        return;
    }
    let scopes = Scope::parse_list(scope_text).unwrap_or_default();
    let mut challenge = Challenge::bearer(realm, service);
    for scope in &scopes {
        challenge = challenge.with_scope(scope.clone());
    }
    if with_error {
        challenge = challenge.with_error(ChallengeError::InsufficientScope);
    }
    let rendered = challenge.render();
    let (scheme, params) =
        parse_challenge(&rendered).unwrap_or_else(|| panic!("unreadable: {rendered:?}"));
    assert_eq!(scheme, "Bearer");
    let mut expected = vec![
        ("realm".to_string(), realm.to_string()),
        ("service".to_string(), service.to_string()),
    ];
    if !scopes.is_empty() {
        let joined: Vec<String> = scopes.iter().map(Scope::to_string).collect();
        expected.push(("scope".to_string(), joined.join(" ")));
    }
    if with_error {
        expected.push(("error".to_string(), "insufficient_scope".to_string()));
    }
    assert_eq!(params, expected, "{rendered:?}");

    let basic = basic_challenge(realm);
    assert_eq!(
        parse_challenge(&basic),
        Some(("Basic".to_string(), vec![("realm".to_string(), realm.to_string())]))
    );
});
