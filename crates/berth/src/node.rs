//! This node's name: what its upload and job leases are held under.
//!
//! A lease names its holder so that other nodes keep off while it runs. When
//! a node dies mid-request its leases outlive it; if it comes back under
//! the same name, it knows every lease held under that name is a remain of
//! its earlier life and frees them at once (`Registry::release_dead_upload_leases`)
//! instead of leaving the sessions locked until the leases expire. That
//! reasoning needs the name to belong to one process at a time:
//!
//! - by default the name is kept in `DATA_DIR/node-name`, made on the first
//!   start, and the serving process holds an exclusive lock on that file
//!   for as long as it runs. A second server started on the same data
//!   directory finds the lock taken and runs under a name of its own, which
//!   it cannot inherit leases under;
//! - a node whose data directory does not survive a restart (a container)
//!   is given its name in the configuration (`node_name`, e.g. the pod's
//!   name); the operator then promises one process per name.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};

use crate::config::Config;

/// The longest node name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// The file in the data directory that holds the node's name.
const NAME_FILE: &str = "node-name";

/// Whether `name` may name a node: 1 to [`MAX_NAME_LEN`] ASCII letters,
/// digits, `.`, `_` and `-`. Lease holders are `<name>/<suffix>`, so a name
/// must not contain `/`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The name this process serves under.
pub struct NodeName {
    pub name: String,
    /// Whether leases held under `name` before this process started are
    /// dead: true unless the name was made up because another process
    /// holds the data directory's name.
    pub owns_earlier_leases: bool,
    /// The locked name file, held open (and so locked) while the process
    /// runs; the lock goes with the process, however it ends.
    _lock: Option<File>,
}

/// Finds this node's name: the configured one, or the one kept in the data
/// directory (made and stored on the first start), locked for this process.
pub fn claim(config: &Config) -> Result<NodeName, String> {
    if let Some(name) = &config.server.node_name {
        return Ok(NodeName {
            name: name.clone(),
            owns_earlier_leases: true,
            _lock: None,
        });
    }
    std::fs::create_dir_all(&config.server.data_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}",
            config.server.data_dir.display()
        )
    })?;
    let path = config.server.data_dir.join(NAME_FILE);
    let failed =
        |e: std::io::Error| format!("cannot use the node name file {}: {e}", path.display());
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let name = fresh_name();
            tracing::warn!(
                file = %path.display(),
                %name,
                "another server uses this data directory; serving under a name of its own"
            );
            return Ok(NodeName {
                name,
                owns_earlier_leases: false,
                _lock: None,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
    }
    let mut stored = String::new();
    file.read_to_string(&mut stored).map_err(failed)?;
    let stored = stored.trim();
    let name = if is_valid_name(stored) {
        stored.to_string()
    } else {
        if !stored.is_empty() {
            tracing::warn!(file = %path.display(), "the node name file holds no valid name; making a new one");
        }
        let name = fresh_name();
        file.set_len(0).map_err(failed)?;
        file.seek(SeekFrom::Start(0)).map_err(failed)?;
        file.write_all(format!("{name}\n").as_bytes())
            .map_err(failed)?;
        file.sync_all().map_err(failed)?;
        name
    };
    Ok(NodeName {
        name,
        owns_earlier_leases: true,
        _lock: Some(file),
    })
}

/// A new random name, `node-` and 32 hex digits.
fn fresh_name() -> String {
    berth_registry::RegistryConfig::default().node_name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (name, valid) in [
            ("node-1", true),
            ("berth-0.registry_a", true),
            (&"n".repeat(MAX_NAME_LEN), true),
            (&"n".repeat(MAX_NAME_LEN + 1), false),
            ("", false),
            ("a/b", false),
            ("a b", false),
            ("nöde", false),
        ] {
            assert_eq!(is_valid_name(name), valid, "{name:?}");
        }
        assert!(is_valid_name(&fresh_name()));
    }

    fn config_in(dir: &std::path::Path) -> Config {
        let mut config = Config::default();
        config.server.data_dir = dir.to_path_buf();
        config
    }

    /// The name is made once, kept across restarts, and held by one
    /// process at a time: while it is held, another claim gets a name of
    /// its own that owns no earlier leases.
    #[test]
    fn the_name_is_kept_and_held_by_one_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config_in(dir.path());
        let first = claim(&config).expect("claim");
        assert!(first.owns_earlier_leases);
        let beside = claim(&config).expect("claim while held");
        assert!(!beside.owns_earlier_leases);
        assert_ne!(beside.name, first.name);
        let name = first.name.clone();
        drop(first);
        let again = claim(&config).expect("claim after the first ended");
        assert_eq!(again.name, name);
        assert!(again.owns_earlier_leases);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(NAME_FILE)).expect("name file"),
            format!("{name}\n")
        );
    }

    #[test]
    fn a_configured_name_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = config_in(dir.path());
        config.server.node_name = Some("pod-7".into());
        let node = claim(&config).expect("claim");
        assert_eq!(node.name, "pod-7");
        assert!(node.owns_earlier_leases);
        assert!(!dir.path().join(NAME_FILE).exists());
    }
}
