//! Every version order on two arbitrary strings, both ways round.
#![no_main]

use berth_scanner::version::Scheme;
use libfuzzer_sys::fuzz_target;

const SCHEMES: [Scheme; 12] = [
    Scheme::Dpkg,
    Scheme::Apk,
    Scheme::Rpm,
    Scheme::Pep440,
    Scheme::Npm,
    Scheme::Cargo,
    Scheme::Go,
    Scheme::Maven,
    Scheme::RubyGems,
    Scheme::Composer,
    Scheme::NuGet,
    Scheme::SemVer,
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_at(text.char_indices().nth(text.chars().count() / 2).map_or(0, |(i, _)| i));
    for scheme in SCHEMES {
        let forward = scheme.compare(a, b);
        let backward = scheme.compare(b, a);
        assert_eq!(forward.map(|o| o.reverse()), backward, "{scheme:?} {a:?} {b:?}");
    }
});
