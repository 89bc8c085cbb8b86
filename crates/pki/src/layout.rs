//! Where `concord pki` keeps files: `<dir>/ca.pem` + `ca.key`, and one
//! `<DEPARTMENT>-<role>-<name>.pem` + `.key` per issued certificate. Keys are
//! written readable by their owner only.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::identity::Identity;
use crate::issue::{Ca, IssueError, Validity};
use crate::tls::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already exists; pass --force to replace it")]
    Exists(PathBuf),
    #[error(transparent)]
    Issue(#[from] IssueError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn ca_cert(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

pub fn ca_key(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

/// The certificate and key paths of `identity` under `dir`.
pub fn cert_files(dir: &Path, identity: &Identity) -> (PathBuf, PathBuf) {
    let stem = format!(
        "{}-{}-{}",
        identity.department, identity.role, identity.name
    );
    (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    )
}

/// The files a holder of `identity` uses, with the directory's CA as the bundle.
pub fn tls_files(dir: &Path, identity: &Identity) -> TlsFiles {
    let (cert, key) = cert_files(dir, identity);
    TlsFiles {
        ca: ca_cert(dir),
        cert,
        key,
    }
}

/// Writes `contents` to `path` through a temporary file and a rename, so a node
/// reloading its certificates never reads half a file.
pub fn write_atomically(path: &Path, contents: &str, private: bool) -> Result<(), LayoutError> {
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(if private { 0o600 } else { 0o644 });
        }
        let mut f = options.open(&tmp).map_err(io(&tmp))?;
        f.write_all(contents.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Creates a CA in `dir`, refusing to replace one unless `force`.
pub fn init_ca(dir: &Path, name: &str, days: i64, force: bool) -> Result<Ca, LayoutError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (cert, key) = (ca_cert(dir), ca_key(dir));
    if !force && (cert.exists() || key.exists()) {
        return Err(LayoutError::Exists(cert));
    }
    let ca = Ca::create(name, Validity::days_from_now(days))?;
    write_atomically(&key, ca.key_pem(), true)?;
    write_atomically(&cert, ca.cert_pem(), false)?;
    Ok(ca)
}

pub fn load_ca(dir: &Path) -> Result<Ca, LayoutError> {
    let (cert, key) = (ca_cert(dir), ca_key(dir));
    let cert_pem = std::fs::read_to_string(&cert).map_err(io(&cert))?;
    let key_pem = std::fs::read_to_string(&key).map_err(io(&key))?;
    Ok(Ca::from_pem(&cert_pem, &key_pem)?)
}

/// Issues a certificate for `identity` into `dir`; returns the (cert, key) paths.
pub fn issue_into(
    ca: &Ca,
    dir: &Path,
    identity: &Identity,
    hosts: &[String],
    validity: Validity,
) -> Result<(PathBuf, PathBuf), LayoutError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let issued = ca.issue(identity, hosts, validity)?;
    let (cert, key) = cert_files(dir, identity);
    write_atomically(&key, &issued.key_pem, true)?;
    write_atomically(&cert, &issued.cert_pem, false)?;
    Ok((cert, key))
}
