//! The key file: read it, or create it on first start (mode 0600), and write it atomically.

use std::path::Path;

use anyhow::Context;

/// Reads the key file, or creates it (mode 600) when it does not exist.
pub fn load_or_create_keyring(path: &Path) -> anyhow::Result<missive_privacy::Keyring> {
    match std::fs::read_to_string(path) {
        Ok(text) => missive_privacy::Keyring::parse(&text)
            .with_context(|| format!("reading the key file {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keyring = missive_privacy::Keyring::generate();
            write_key_file(path, &keyring)?;
            tracing::warn!(
                path = %path.display(),
                "created a new key file: back it up apart from the data; without it the data cannot be read"
            );
            Ok(keyring)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading the key file {}", path.display()))),
    }
}

/// Writes the key file atomically (a temporary file renamed over it), readable by its owner only.
pub fn write_key_file(path: &Path, keyring: &missive_privacy::Keyring) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("keys.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("writing the key file {}", tmp.display()))?;
    f.write_all(keyring.to_file_text().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing the key file {}", path.display()))?;
    Ok(())
}
