//! `/v2/…` paths, read from their end into an endpoint: parsing never
//! panics, and an endpoint it yields names exactly the path's parts (the
//! repository is the path before the resource keyword). An upload id is
//! any spelling of a UUID (`UploadId::parse`), so it is compared as one.
#![no_main]

use berth_server::endpoint::Endpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    let Ok(endpoint) = Endpoint::parse(path) else {
        return;
    };
    let rebuilt = match &endpoint {
        Endpoint::Base => String::new(),
        Endpoint::Catalog => "_catalog".to_string(),
        Endpoint::Tags(name) => format!("{name}/tags/list"),
        Endpoint::Manifest(name, reference) => format!("{name}/manifests/{reference}"),
        Endpoint::Blob(name, digest) => format!("{name}/blobs/{digest}"),
        Endpoint::UploadStart(name) => {
            // Both `…/blobs/uploads` and `…/blobs/uploads/` start an upload.
            let bare = format!("{name}/blobs/uploads");
            if path.ends_with('/') {
                format!("{bare}/")
            } else {
                bare
            }
        }
        Endpoint::Upload(name, id) => {
            let given = path.rsplit('/').next().unwrap_or_default();
            assert_eq!(
                berth_oci::UploadId::parse(given).as_ref(),
                Some(id),
                "{path:?}"
            );
            format!("{name}/blobs/uploads/{given}")
        }
        Endpoint::Referrers(name, digest) => format!("{name}/referrers/{digest}"),
    };
    assert_eq!(rebuilt, path, "{endpoint:?}");
});
