//! Every analyzer (package databases: dpkg, apk, rpm's SQLite, BerkeleyDB
//! and ndb; lockfiles; Java archives; binaries) on arbitrary bytes; the
//! first byte picks the file kind.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&selector, rest)) = data.split_first() {
        berth_scanner::fuzzing::analyze(selector, rest);
    }
});
