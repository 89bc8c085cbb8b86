//! `concord pki`: a small CA for development and small deployments. The identity a
//! certificate carries is `concord://<DEPARTMENT>/<role>/<name>` in a URI SAN (see
//! docs/security.md); any CA that writes that SAN works as well.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use concord_pki::{layout, CertRole, Identity, ReloadingTls, TlsFiles, Validity};

#[derive(clap::Subcommand)]
pub enum PkiCmd {
    /// Create a CA (ca.pem, ca.key) in --dir.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "Concord CA")]
        name: String,
        #[arg(long, default_value_t = 3650)]
        days: i64,
        /// Replace an existing CA (every certificate it issued stops being trusted
        /// once nodes drop it from their bundle).
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate for a department's node, client system or operator.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// Department code, e.g. SAMR.
        #[arg(long)]
        department: String,
        /// node, client or admin.
        #[arg(long)]
        role: String,
        /// A label for the holder, e.g. node-1 or case-system.
        #[arg(long)]
        name: String,
        /// DNS name or IP address clients dial (nodes only; repeat for several).
        #[arg(long = "host")]
        hosts: Vec<String>,
        #[arg(long, default_value_t = 397)]
        days: i64,
    },
    /// Print the identity and validity of a certificate file.
    Show { cert: PathBuf },
}

pub fn run(cmd: PkiCmd) -> anyhow::Result<()> {
    match cmd {
        PkiCmd::Init {
            dir,
            name,
            days,
            force,
        } => {
            layout::init_ca(&dir, &name, days, force)?;
            println!("created {}", layout::ca_cert(&dir).display());
            println!(
                "private key {} (keep it off the nodes)",
                layout::ca_key(&dir).display()
            );
        }
        PkiCmd::Issue {
            dir,
            department,
            role,
            name,
            hosts,
            days,
        } => {
            let role: CertRole = role.parse()?;
            let identity = Identity::new(department, role, name)?;
            let ca =
                layout::load_ca(&dir).context("loading the CA (run `concord pki init` first)")?;
            let (cert, key) =
                layout::issue_into(&ca, &dir, &identity, &hosts, Validity::days_from_now(days))?;
            println!("issued {} for {}", cert.display(), identity.to_uri());
            println!("private key {}", key.display());
        }
        PkiCmd::Show { cert } => {
            let pem =
                std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
            let der = rustls_pki_types::pem::PemObject::from_pem_slice(&pem)
                .map(|c: rustls_pki_types::CertificateDer| c.to_vec())
                .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
            let id = Identity::from_cert_der(&der)?;
            println!("identity  {}", id.to_uri());
            println!(
                "department {}  role {}  name {}",
                id.department, id.role, id.name
            );
        }
    }
    Ok(())
}

/// The holders `concord dev` issues certificates for.
pub fn dev_identities(departments: &[&str]) -> Vec<Identity> {
    let mut ids = vec![];
    for (i, d) in departments.iter().enumerate() {
        ids.extend(Identity::new(*d, CertRole::Node, format!("n{}", i + 1)));
        ids.extend(Identity::new(*d, CertRole::Client, "app"));
    }
    ids.extend(Identity::new("BIGDATA", CertRole::Admin, "operator"));
    ids
}

/// Creates (once) the dev CA and the certificates of `identities` under `dir`.
/// Existing files are kept, so a restarted dev cluster keeps its identities.
pub fn ensure_dev_pki(dir: &Path, identities: &[Identity]) -> anyhow::Result<()> {
    let ca = if layout::ca_cert(dir).exists() {
        layout::load_ca(dir)?
    } else {
        layout::init_ca(dir, "Concord dev CA", 3650, false)?
    };
    let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    for id in identities {
        let (cert, _) = layout::cert_files(dir, id);
        if !cert.exists() {
            let hosts = if id.role == CertRole::Node {
                &hosts[..]
            } else {
                &[]
            };
            layout::issue_into(&ca, dir, id, hosts, Validity::days_from_now(365))?;
        }
    }
    Ok(())
}

/// The files of `identity` in a `concord pki` directory, loaded for dialling.
pub fn load(dir: &Path, identity: &Identity) -> anyhow::Result<Arc<ReloadingTls>> {
    let files: TlsFiles = layout::tls_files(dir, identity);
    Ok(Arc::new(ReloadingTls::load(files)?))
}
