//! The token endpoint's OAuth2 POST form (password and refresh-token
//! grants): parsing never panics, a grant it accepts carries non-empty
//! credentials, and its scopes round-trip.
#![no_main]

use berth_auth::challenge::{Grant, TokenPostRequest};
use berth_auth::Scope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &str| {
    let Ok(request) = TokenPostRequest::parse(body) else {
        return;
    };
    match &request.grant {
        Grant::Password { username, password } => {
            assert!(!username.is_empty() && !password.expose().is_empty());
        }
        Grant::RefreshToken { refresh_token } => {
            // `access_type=offline` is allowed here: with a refresh grant
            // it asks for the token's rotation, so it is not checked.
            assert!(!refresh_token.expose().is_empty());
        }
    }
    for scope in &request.scopes {
        assert_eq!(Scope::parse(&scope.to_string()).ok().as_ref(), Some(scope));
    }
});
