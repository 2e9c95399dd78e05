//! File modes of what Berth keeps on disk.
//!
//! The data directory holds the SQLite database (with the private key that
//! signs registry tokens) and every blob, so nobody but the account Berth
//! runs as may read it: directories are created 0700 and the database, its
//! WAL and shared-memory files, the initial administrator password and
//! (in `berth-storage`) upload and blob files 0600. Installs made before
//! this have 0755 directories and 0644 files; `berth serve` tightens the
//! data directory, the blob store's root and the database files at every
//! start. It does not walk the blobs: once their directory is 0700 nobody
//! else can reach them, and a registry can hold millions.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of directories Berth creates.
pub const DIRECTORY_MODE: u32 = 0o700;
/// The mode of files Berth creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with mode 0700, and tightens an
/// existing one to 0700. Returns whether an existing directory was
/// tightened, so the caller can say so.
pub fn private_directory(dir: &Path) -> Result<bool, String> {
    let failed = |e: std::io::Error| format!("cannot create directory {}: {e}", dir.display());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIRECTORY_MODE)
        .create(dir)
        .map_err(failed)?;
    restrict(dir, DIRECTORY_MODE)
}

/// Prepares the SQLite database at `path` so that it and the files SQLite
/// makes beside it (`-wal`, `-shm`, which take the database file's mode)
/// are 0600: creates it empty if it is missing (SQLite takes an empty file
/// for a new database) and tightens it and its companions if they exist.
pub fn private_sqlite_file(path: &Path) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            private_directory(parent)?;
        }
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| format!("cannot create the database file {}: {e}", path.display()))?;
    for file in sqlite_files(path) {
        if file.exists() {
            restrict(&file, FILE_MODE)?;
        }
    }
    Ok(())
}

/// The database file and the files SQLite keeps beside it.
pub fn sqlite_files(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    files
}

/// Writes `contents` to `path` with mode 0600, replacing the file if it
/// exists (and tightening it first, so the contents are never readable by
/// others, not even for a moment).
pub fn write_private_file(path: &Path, contents: &str) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(failed)?;
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .map_err(failed)?;
    file.set_len(0).map_err(failed)?;
    file.write_all(contents.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)
}

/// Sets `path`'s permission bits to `mode` if they allow more; returns
/// whether they changed.
fn restrict(path: &Path, mode: u32) -> Result<bool, String> {
    let metadata = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the mode of {}: {e}", path.display()))?;
    let current = metadata.permissions().mode() & 0o777;
    if current & !mode == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
        format!(
            "cannot restrict {} to mode {mode:o} (it is {current:o}): {e}",
            path.display()
        )
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_are_private_and_old_ones_are_tightened() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("a/b");
        assert!(!private_directory(&fresh).unwrap());
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);

        let old = root.path().join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(private_directory(&old).unwrap());
        assert_eq!(mode(&old), 0o700);
        // Already tighter than 0700 is left alone.
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o500)).unwrap();
        assert!(!private_directory(&old).unwrap());
        assert_eq!(mode(&old), 0o500);
    }

    #[test]
    fn database_files_are_private() {
        let root = tempfile::tempdir().unwrap();
        let db = root.path().join("data/berth.db");
        private_sqlite_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&root.path().join("data")), 0o700);
        assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);

        // An older install's files, readable by all, are tightened; their
        // contents are kept.
        std::fs::write(&db, b"database").unwrap();
        let wal = root.path().join("data/berth.db-wal");
        std::fs::write(&wal, b"log").unwrap();
        for file in [&db, &wal] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        private_sqlite_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(std::fs::read(&db).unwrap(), b"database");
    }

    #[test]
    fn private_files_replace_their_contents() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("secret");
        std::fs::write(&path, b"an older, longer secret").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private_file(&path, "new\n").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
    }
}
