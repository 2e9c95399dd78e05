//! Repository names, as every `/v2/<name>/…` path and token scope carries
//! them: parsing never panics, and what parses is exactly the input, within
//! the length limit, and reads back the same.
#![no_main]

use berth_oci::RepoName;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let Ok(name) = RepoName::parse(input) else {
        return;
    };
    assert_eq!(name.as_str(), input);
    assert!(input.len() <= berth_oci::name::MAX_NAME_LEN);
    assert!(!input.starts_with('/') && !input.ends_with('/') && !input.contains("//"));
    assert!(!input.bytes().any(|b| b.is_ascii_uppercase()), "{input:?}");
    assert!(input.starts_with(name.namespace()));
    assert_eq!(RepoName::parse(name.as_str()).ok(), Some(name));
});
