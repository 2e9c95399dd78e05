//! A private configuration for the containers tools (skopeo, podman,
//! buildah): registries.conf marking the registry under test insecure
//! (plain HTTP), a permissive signature policy, an empty auth file, and
//! storage in a temp dir with the `vfs` driver. Nothing from the host's
//! configuration or image store leaks in, and nothing is left behind.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct ContainersEnv {
    /// Holds every file and the image store; removed on drop.
    pub dir: tempfile::TempDir,
}

impl ContainersEnv {
    pub fn new(registry_addr: &str) -> ContainersEnv {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        for sub in ["storage", "run", "tmp"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        // The registry speaks plain HTTP; `insecure = true` lets every tool
        // use it without a per-command TLS flag, and no short-name search
        // ever reaches a public registry.
        std::fs::write(
            root.join("registries.conf"),
            format!(
                "unqualified-search-registries = []\nshort-name-mode = \"disabled\"\n\n\
                 [[registry]]\nlocation = \"{registry_addr}\"\ninsecure = true\n"
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        std::fs::write(root.join("auth.json"), r#"{"auths":{}}"#).unwrap();
        // cgroupfs and file events keep podman away from systemd and
        // journald, which a test machine may not run.
        std::fs::write(
            root.join("containers.conf"),
            "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        std::fs::write(
            root.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                root.join("storage").display(),
                root.join("run").display()
            ),
        )
        .unwrap();
        ContainersEnv { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn policy(&self) -> PathBuf {
        self.path("policy.json")
    }

    /// A command for `tool` with this configuration in its environment.
    pub fn command(&self, tool: &Path) -> Command {
        let mut cmd = Command::new(tool);
        cmd.env("CONTAINERS_REGISTRIES_CONF", self.path("registries.conf"))
            .env("REGISTRY_AUTH_FILE", self.path("auth.json"))
            .env("CONTAINERS_CONF", self.path("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.path("storage.conf"))
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("TMPDIR", self.path("tmp"));
        cmd
    }

    /// A podman or buildah command on this private `vfs` image store. The
    /// flags repeat storage.conf so the intent is visible in test logs.
    pub fn storage_command(&self, tool: &Path) -> Command {
        let mut cmd = self.command(tool);
        cmd.arg("--root")
            .arg(self.path("storage"))
            .arg("--runroot")
            .arg(self.path("run"))
            .arg("--storage-driver")
            .arg("vfs");
        cmd
    }
}
