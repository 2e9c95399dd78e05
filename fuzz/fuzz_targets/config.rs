//! The configuration file (`berth.toml`, `--config`): reading any text
//! never panics, a refusal says what is wrong, and an accepted file's
//! `berth config check` listing reads back as a file that gives every key
//! the same value (the promise `reference::check_listing` makes).
#![no_main]

use std::path::Path;

use berth::config::reference::check_listing;
use berth::config::{ConfigArgs, Environment, KEYS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let args = ConfigArgs::default();
    let env = Environment::from_pairs([]);
    let path = Path::new("berth.toml");
    let loaded = match args.load_from(&env, Some((path, text))) {
        Ok(loaded) => loaded,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    let listing = check_listing(&loaded);
    // Secrets (and a database URL's password) are listed as `***`, which
    // does not read back as the secret.
    if listing.contains("***") {
        return;
    }
    let again = args
        .load_from(&env, Some((path, &listing)))
        .unwrap_or_else(|error| panic!("the listing does not read back: {error}\n{listing}"));
    for key in KEYS {
        assert_eq!(
            (key.show)(&loaded.config),
            (key.show)(&again.config),
            "{} changed on reading the listing back\n{listing}",
            key.qualified()
        );
    }
});
