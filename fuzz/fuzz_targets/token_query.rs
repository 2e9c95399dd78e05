//! The token endpoint's GET query (`/auth/token?service=…&scope=…`), sent by
//! anyone, anonymous clients included: parsing never panics, and each scope
//! it yields renders back to text that parses to the same scope.
#![no_main]

use berth_auth::challenge::TokenGetRequest;
use berth_auth::Scope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|query: &str| {
    let Ok(request) = TokenGetRequest::parse(query) else {
        return;
    };
    for scope in &request.scopes {
        assert_eq!(Scope::parse(&scope.to_string()).ok().as_ref(), Some(scope));
    }
});
