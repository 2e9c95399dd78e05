//! OSV records, JSON and YAML, and matching what parses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = [berth_scanner::osv::parse_json(data), berth_scanner::osv::parse_yaml(data)];
    for advisory in parsed.into_iter().flatten() {
        for affected in &advisory.affected {
            if let Some(scheme) = berth_scanner::version::Scheme::for_osv_ecosystem(&affected.ecosystem) {
                for version in ["0", "1.0", "1.2.3-4", "v2.0.0"] {
                    let _ = berth_scanner::matcher::affects(affected, scheme, version);
                }
            }
        }
    }
});
