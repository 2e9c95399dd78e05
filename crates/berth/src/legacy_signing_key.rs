//! The signing-key file of installs from before the token signing keys
//! moved into the metadata database: `<data_dir>/keys/signing.pem`
//! (PKCS#8 PEM). When the database has no key yet, `berth serve` imports
//! this one instead of generating a new key, so tokens it signed keep
//! verifying through the upgrade; afterwards the file is no longer read.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use berth_auth::jwt::SigningKey;

/// Where an older install kept its key, under the data directory.
pub fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("signing.pem")
}

/// The key in `data_dir`'s key file, or `None` if there is no such file.
/// A file that exists but cannot be read or is not a key is an error: it
/// is the key tokens in the wild were signed with, and generating another
/// would cut them all off.
pub fn read(data_dir: &Path) -> Result<Option<SigningKey>, String> {
    let path = key_file(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(pem) => SigningKey::from_pkcs8_pem(&pem)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_auth::jwt::{KeySet, TokenAuthority};
    use berth_auth::keys::{load_or_create, KeyOrigin};
    use berth_auth::{AuthStore, MetaAuthStore};
    use berth_meta::sqlite::SqliteMetaStore;
    use time::OffsetDateTime;

    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    async fn store() -> Arc<dyn AuthStore> {
        let sqlite = SqliteMetaStore::open_in_memory().await.unwrap();
        Arc::new(MetaAuthStore::new(Arc::new(sqlite)))
    }

    fn write_key(data_dir: &Path, pem: &str) {
        std::fs::create_dir_all(data_dir.join("keys")).unwrap();
        std::fs::write(key_file(data_dir), pem).unwrap();
    }

    #[tokio::test]
    async fn an_older_install_key_is_imported_so_its_tokens_keep_verifying() {
        let store = store().await;
        let data_dir = tempfile::tempdir().unwrap();
        let old = SigningKey::generate();
        write_key(data_dir.path(), old.to_pkcs8_pem().expose());
        let before = TokenAuthority::new(KeySet::new(old.clone()), "berth", "berth");
        let token = before.issue(Some("alice"), vec![], now(), None).unwrap();

        let (keys, origin) = load_or_create(store.as_ref(), now(), || read(data_dir.path()))
            .await
            .unwrap();
        assert_eq!(origin, KeyOrigin::Supplied);
        assert_eq!(keys.current().kid(), old.kid());
        TokenAuthority::new(keys, "berth", "berth")
            .verify(token.token.expose(), now())
            .unwrap();

        // Once imported, the file is not read again: even a broken one.
        write_key(data_dir.path(), "not a key");
        let (_, origin) = load_or_create(store.as_ref(), now(), || read(data_dir.path()))
            .await
            .unwrap();
        assert_eq!(origin, KeyOrigin::Store);
    }

    #[tokio::test]
    async fn without_a_key_file_a_key_is_generated_and_no_file_written() {
        let store = store().await;
        let data_dir = tempfile::tempdir().unwrap();
        let (_, origin) = load_or_create(store.as_ref(), now(), || read(data_dir.path()))
            .await
            .unwrap();
        assert_eq!(origin, KeyOrigin::Generated);
        assert!(!key_file(data_dir.path()).exists());
    }

    #[tokio::test]
    async fn a_broken_key_file_fails_the_first_start() {
        let store = store().await;
        let data_dir = tempfile::tempdir().unwrap();
        write_key(data_dir.path(), "not a key");
        let result = load_or_create(store.as_ref(), now(), || read(data_dir.path())).await;
        let Err(error) = result else {
            panic!("a broken key file is an error");
        };
        let error = error.to_string();
        assert!(error.contains("signing.pem"), "{error}");
        assert!(store.list_signing_keys().await.unwrap().is_empty());
    }
}
