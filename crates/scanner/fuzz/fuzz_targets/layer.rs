//! The whole indexer on a layer blob: decompression, tar, analyzers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let digest = berth_oci::Algorithm::Sha256.digest_of(data);
    let indexer = berth_scanner::Indexer::default();
    let layer = indexer.index_layer_blocking(digest, None, data);
    let _ = berth_scanner::IndexReport::from_layers(std::slice::from_ref(&layer));
});
