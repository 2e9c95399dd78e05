//! The `Authorization` header: parsing never panics, and the credentials it
//! yields are well formed (a Basic user name is non-empty and has no colon,
//! a bearer token no space).
#![no_main]

use berth_auth::challenge::Credentials;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|header: &str| {
    match Credentials::parse(header) {
        Some(Credentials::Basic { username, .. }) => {
            assert!(!username.is_empty() && !username.contains(':'));
        }
        Some(Credentials::Bearer(token)) => {
            assert!(!token.expose().is_empty() && !token.expose().contains(' '));
        }
        None => {}
    }
});
