//! The S3 backend on a real S3-compatible store: the SeaweedFS harness of
//! `berth-test-support`, plus what needs this crate's types (a store on a
//! test bucket and the shared suite's leftovers probe).
#![allow(dead_code)]

use berth_storage::s3::{S3BlobStore, S3Config};
use berth_storage::suite::Leftovers;
pub use berth_test_support::seaweedfs::{weed, Weed, ACCESS_KEY, REGION, SECRET_KEY};

/// A store configured the way the binary would, with a prefix so that
/// prefix handling is exercised too.
pub fn config(weed: &Weed, bucket: &str) -> S3Config {
    S3Config {
        endpoint: Some(weed.endpoint.clone()),
        path_style: true,
        allow_http: true,
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(SECRET_KEY.into()),
        region: REGION.into(),
        ..S3Config::from_url(&format!("s3://{bucket}/registry/berth")).expect("a valid URL")
    }
}

pub fn store(weed: &Weed, bucket: &str) -> S3BlobStore {
    S3BlobStore::new(&config(weed, bucket)).expect("store")
}

/// The suite's leftovers probe for one bucket: the store's own view (objects
/// under `uploads/` and foreign objects) plus the multipart uploads in
/// progress, which only a raw request can see.
pub struct Probe {
    pub weed: &'static Weed,
    pub bucket: String,
    pub store: S3BlobStore,
}

#[async_trait::async_trait]
impl Leftovers for Probe {
    async fn leftovers(&self) -> Vec<String> {
        let mut found = self.store.leftovers().await;
        found.extend(
            self.weed
                .multipart_uploads(&self.bucket)
                .await
                .into_iter()
                .map(|upload| format!("multipart upload {upload}")),
        );
        found
    }
}

/// A fresh bucket, a store on it and its probe; `None` when skipped.
pub async fn new_probe(test: &str) -> Option<Probe> {
    let weed = weed(test)?;
    let bucket = weed.new_bucket().await;
    let store = store(weed, &bucket);
    Some(Probe {
        weed,
        bucket,
        store,
    })
}
