//! Registry tokens (bearer JWTs) verified with a fixed key at a fixed time:
//! verification never panics, and anything it accepts was issued by this
//! authority for this service and is valid now. The seed corpus holds valid
//! tokens (`make_jwt_seeds`), so mutations start from the accepting path.
#![no_main]

use std::sync::OnceLock;

use berth_auth::TokenAuthority;
use berth_fuzz::{jwt_authority, now, ISSUER, NOW, SERVICE};
use libfuzzer_sys::fuzz_target;

fn authority() -> &'static TokenAuthority {
    static AUTHORITY: OnceLock<TokenAuthority> = OnceLock::new();
    AUTHORITY.get_or_init(jwt_authority)
}

fuzz_target!(|token: &str| {
    let authority = authority();
    if let Ok(claims) = authority.verify(token, now()) {
        assert_eq!(claims.iss, ISSUER);
        assert_eq!(claims.aud, SERVICE);
        assert!(claims.nbf <= NOW + 60 && NOW < claims.exp + 60, "{claims:?}");
    }
    if let Ok(claims) = authority.verify_for(token, now(), "repository", "team-a/api", "push") {
        assert!(claims.allows("repository", "team-a/api", "push"));
    }
});
