//! Folders and file systems for the SQLite store suites: a temporary folder removed on drop,
//! and a small tmpfs (full at its size, or read-only) mounted for a test and unmounted after.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A new empty folder under the system's temporary folder, removed with what it holds when
/// dropped.
pub struct Folder(PathBuf);

impl Folder {
    /// A folder named after `prefix` and a random suffix.
    pub fn new(prefix: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("tidings-{prefix}-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&path).expect("a temporary folder");
        Folder(path)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A file in the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tmpfs of `size` bytes mounted on a folder of its own (the suites run as root, as
/// `.ci/run` does); unmounted when dropped.
pub struct Tmpfs {
    folder: Folder,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes.
    ///
    /// # Panics
    /// When it cannot be mounted (the suites need root for it).
    pub fn mount(size: u64) -> Self {
        let folder = Folder::new("tmpfs");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(folder.path())
            .status()
            .expect("mount");
        assert!(status.success(), "mounting a tmpfs needs root: {status}");
        Tmpfs { folder }
    }

    /// The mounted folder.
    pub fn path(&self) -> &Path {
        self.folder.path()
    }

    /// Remounts it read-only (`true`) or read-write.
    ///
    /// # Panics
    /// When the remount fails.
    pub fn read_only(&self, read_only: bool) {
        let mode = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        let status = Command::new("mount")
            .args(["-o", mode])
            .arg(self.path())
            .status()
            .expect("mount");
        assert!(status.success(), "remount {mode}: {status}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}
