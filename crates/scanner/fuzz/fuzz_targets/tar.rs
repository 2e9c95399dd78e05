//! The capped tar reader on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    berth_scanner::fuzzing::tar(data);
});
