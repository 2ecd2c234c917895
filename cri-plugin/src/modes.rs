//! Who may see the plugin's files: its directories are root's, the tops traversable (0711)
//! and anything holding data private (0700), as berthd's own root and state are.

use std::path::Path;

/// A directory other users may pass through by name but not list.
pub const TRAVERSABLE_DIR: u32 = 0o711;
/// A directory only root reads.
pub const PRIVATE_DIR: u32 = 0o700;

/// Creates `dir` (missing parents 0711) and sets its mode to exactly `mode`.
pub fn ensure_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(TRAVERSABLE_DIR)
        .create(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("create {}: {e}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| std::io::Error::new(e.kind(), format!("chmod {mode:o} {}: {e}", dir.display())))
}
