//! Removing deleted mailboxes' Maildirs from disk, in-process, when
//! [`PanelConfig::delete_maildirs`](crate::PanelConfig) is on (PostfixAdmin runs
//! `$CONF['mailbox_postdeletion_script']` / `['domain_postdeletion_script']` for this).
//!
//! Owns the path check and the removal; it never touches the database. Callers run it after
//! the rows are committed, so a failure leaves files behind, never rows, and is logged, not
//! returned to the browser. A `maildir` value comes from the database (which other tools write
//! too), so it is used only when it is relative, non-empty and free of `..`: anything else is
//! refused and logged, and nothing outside the base is ever removed. The last component is not
//! followed if it is a symlink (`remove_dir_all` removes the link itself).
//!
//! Entry points: [`resolve`] (pure), [`remove_all`].

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MaildirError {
    #[error("refusing to remove maildir {0:?}: not a relative path below the maildir base")]
    Unsafe(String),
    #[error("cannot remove {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `<base>/<maildir>`, if `maildir` is a relative path with at least one normal component and
/// no `..` anywhere (nor a root, drive prefix or NUL).
pub fn resolve(base: &Path, maildir: &str) -> Result<PathBuf, MaildirError> {
    let unsafe_ = || MaildirError::Unsafe(maildir.to_string());
    if maildir.contains("..") || maildir.contains('\0') {
        return Err(unsafe_());
    }
    let mut out = base.to_path_buf();
    let mut normal = 0usize;
    for c in Path::new(maildir).components() {
        match c {
            Component::Normal(p) => {
                out.push(p);
                normal += 1;
            }
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_());
            }
        }
    }
    if normal == 0 {
        return Err(unsafe_());
    }
    Ok(out)
}

/// Remove `<base>/<maildir>` recursively. `Ok(None)` when it does not exist.
pub fn remove(base: &Path, maildir: &str) -> Result<Option<PathBuf>, MaildirError> {
    let path = resolve(base, maildir)?;
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(MaildirError::Io { path, source }),
        Ok(m) if m.file_type().is_symlink() || m.is_file() => std::fs::remove_file(&path),
        Ok(_) => std::fs::remove_dir_all(&path),
    }
    .map_err(|source| MaildirError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(Some(path))
}

/// Remove each maildir under `base` (see [`remove`]), logging what was removed and what was
/// refused or failed; then remove `<base>/<domain>` if `domain` is given and that directory is
/// left empty (the domain directory of `$CONF['domain_path']`). Returns the paths removed.
pub fn remove_all(base: &Path, maildirs: &[String], domain: Option<&str>) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for maildir in maildirs {
        match remove(base, maildir) {
            Ok(Some(path)) => {
                tracing::info!(path = %path.display(), "maildir removed");
                removed.push(path);
            }
            Ok(None) => {
                tracing::info!(maildir = %maildir, "maildir not on disk; nothing to remove");
            }
            Err(e) => tracing::warn!(maildir = %maildir, "{e}"),
        }
    }
    if let Some(domain) = domain {
        // `remove_dir` only removes an empty directory: anything else there stays.
        if let Ok(dir) = resolve(base, domain)
            && std::fs::remove_dir(&dir).is_ok()
        {
            tracing::info!(path = %dir.display(), "domain maildir directory removed");
            removed.push(dir);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_accepts_relative_paths_only() {
        let base = Path::new("/var/mail/vhosts");
        assert_eq!(
            resolve(base, "example.com/john/").ok(),
            Some(PathBuf::from("/var/mail/vhosts/example.com/john"))
        );
        assert_eq!(
            resolve(base, "./john@example.com/").ok(),
            Some(PathBuf::from("/var/mail/vhosts/john@example.com"))
        );
        for bad in [
            "",
            ".",
            "./",
            "/",
            "/etc/",
            "/var/mail/vhosts/example.com/john/",
            "..",
            "../other/",
            "example.com/../../etc/",
            "example.com/john/..",
            "a..b/",
            "x\0y/",
        ] {
            assert!(
                matches!(resolve(base, bad), Err(MaildirError::Unsafe(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn remove_deletes_the_tree_and_tolerates_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path();
        let md = base.join("example.com/john/cur");
        std::fs::create_dir_all(&md).expect("mkdir");
        std::fs::write(md.join("1.eml"), b"x").expect("write");
        std::fs::create_dir_all(base.join("example.com/jane/new")).expect("mkdir");
        assert_eq!(
            remove(base, "example.com/john/").ok().flatten(),
            Some(base.join("example.com/john"))
        );
        assert!(!base.join("example.com/john").exists());
        assert!(base.join("example.com/jane/new").exists());
        assert!(matches!(remove(base, "example.com/john/"), Ok(None)));
        // Domain directory removed only once empty.
        let removed = remove_all(
            base,
            &["example.com/jane/".to_string()],
            Some("example.com"),
        );
        assert_eq!(
            removed,
            vec![base.join("example.com/jane"), base.join("example.com")]
        );
        assert!(!base.join("example.com").exists() && base.exists());
    }
}
