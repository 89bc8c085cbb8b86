//! Node configuration: one TOML file, overridden by `CONCORD_*` environment variables,
//! validated before anything starts so a mistake is reported with the setting's name.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {setting}: {reason}")]
    Invalid { setting: String, reason: String },
}

fn invalid(setting: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_string(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Unique, non-zero, never reused for another node.
    pub node_id: u64,
    /// The department this node serves and acts for.
    pub department: String,
    /// Address the gRPC server binds, e.g. 0.0.0.0:7001 (port 0 picks a free port).
    pub listen: String,
    /// Address other nodes use to reach this one; defaults to `listen`.
    #[serde(default)]
    pub advertise: String,
    /// Plaintext operations port: grpc.health.v1 (for Kubernetes gRPC probes, which
    /// cannot present a client certificate) and Prometheus `/metrics`. No data is
    /// served there. Off unless set, e.g. "0.0.0.0:7100".
    #[serde(default)]
    pub ops_listen: Option<String>,
    /// Nodes to ask, at start, to add this node as a learner (JoinService), until
    /// it is a member. Empty: wait to be added by an operator.
    #[serde(default)]
    pub join: Vec<String>,
    pub data_dir: PathBuf,
    /// When true and the store is empty, this node initialises the cluster with
    /// `initial_members` and seeds the department registry.
    #[serde(default)]
    pub bootstrap: bool,
    /// node id -> "DEPT@host:port", used only by the bootstrapping node.
    #[serde(default, deserialize_with = "node_id_keys")]
    pub initial_members: BTreeMap<u64, String>,
    #[serde(default)]
    pub raft: RaftTuning,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub housekeeping: Housekeeping,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub tls: TlsSettings,
    #[serde(default)]
    pub membership: MembershipTarget,
}

/// The membership the leader keeps by itself (see `membership.rs`). Unset fields
/// leave that part to the operator's ClusterService calls.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MembershipTarget {
    /// Keep this many voters: caught-up learners are promoted (lowest node id first)
    /// and voters above it made learners (highest first, never the leader).
    pub voters: Option<usize>,
    /// Members with a node id above this are removed: the pods of a scaled-down
    /// StatefulSet.
    pub max_node_id: Option<u64>,
    /// With it, only members whose address is this template with `{index}` = node
    /// id - 1 are managed; a node joined by hand elsewhere is left alone.
    pub peer_template: Option<String>,
    /// A learner within this many entries of the leader's log counts as caught up.
    pub catch_up_entries: u64,
    /// How often the leader compares the membership with this target.
    pub interval_ms: u64,
}

impl Default for MembershipTarget {
    fn default() -> Self {
        MembershipTarget {
            voters: None,
            max_node_id: None,
            peer_template: None,
            catch_up_entries: 1_000,
            interval_ms: 2_000,
        }
    }
}

/// Mutual TLS on every port. The three files are PEM; see docs/security.md.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Plaintext on every port, for development only; the node warns loudly.
    pub insecure: bool,
    /// CA bundle: certificates issued by any CA here are accepted.
    pub ca: PathBuf,
    /// This node's certificate (role `node`, this node's department).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Development only: the CA's private key. When set, the node issues itself a
    /// fresh node certificate (its department, its advertised host and localhost)
    /// into `cert`/`key` at every start. The Helm chart's `tls.devCA` uses it; a CA
    /// key on every node is no place for real data.
    pub ca_key: Option<PathBuf>,
    /// More names for that self-issued certificate (e.g. the department's Service).
    pub hosts: Vec<String>,
    /// How often the files are checked for rotation.
    pub reload_interval_ms: u64,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            insecure: false,
            ca: PathBuf::new(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            ca_key: None,
            hosts: Vec::new(),
            reload_interval_ms: 2000,
        }
    }
}

impl TlsSettings {
    pub fn files(&self) -> concord_pki::TlsFiles {
        concord_pki::TlsFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one (100,000, as
    /// etcd's `--snapshot-count`: a dump of the whole state every 20,000 cost a
    /// 64-client load 8 % of its writes, docs/performance.md)...
    pub snapshot_after_entries: u64,
    /// ...and once the log since the last one holds at least this percent of its
    /// bytes, so the cost of a dump stays in proportion to the writes (0: entries
    /// alone decide).
    pub snapshot_log_percent: u64,
    /// Entries kept in the log behind a snapshot (for followers that lag a little).
    pub keep_entries_behind_snapshot: u64,
    /// How long the leader keeps the log a follower or learner will read next while
    /// that peer makes no progress (see `compaction`).
    pub lagging_peer_grace_ms: u64,
    pub snapshot_chunk_bytes: u64,
    /// How long the leader waits for each InstallSnapshot chunk.
    pub install_snapshot_timeout_ms: u64,
    /// The final chunk, answered once the follower has installed the snapshot,
    /// gets one more second per this many MiB of snapshot.
    pub install_snapshot_min_mib_per_s: u64,
    pub max_payload_entries: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_after_entries: 100_000,
            snapshot_log_percent: 10,
            keep_entries_behind_snapshot: 1_000,
            lagging_peer_grace_ms: 30_000,
            snapshot_chunk_bytes: 1 << 20,
            install_snapshot_timeout_ms: 10_000,
            install_snapshot_min_mib_per_s: 4,
            max_payload_entries: 512,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Requests larger than this are refused (RESOURCE_EXHAUSTED) before decoding.
    pub max_request_bytes: usize,
    /// How long a write or a linearizable read waits for a leader when the caller
    /// sets no deadline.
    pub default_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 4 << 20,
            default_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Housekeeping {
    /// How often the leader checks whether a Tick is due.
    pub tick_interval_ms: u64,
    /// How long an applied request id is remembered for exactly-once retries.
    pub request_id_retention_secs: u64,
    /// Watch history kept, in revisions.
    pub event_retention: u64,
}

impl Default for Housekeeping {
    fn default() -> Self {
        Housekeeping {
            tick_interval_ms: 1000,
            request_id_retention_secs: 3600,
            event_retention: 100_000,
        }
    }
}

/// Memory the state store (fjall) may hold: most of a node's RSS at scale.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Block cache for the state's tables, MiB.
    pub cache_mib: u64,
    /// Writes buffered in memory before they are flushed to a table, MiB. Up to five
    /// buffers of this size can be held while flushes catch up.
    pub memtable_mib: u64,
}

impl Default for Storage {
    fn default() -> Self {
        let store = concord_store::StoreOptions::default();
        Storage {
            cache_mib: store.cache_bytes >> 20,
            memtable_mib: store.memtable_bytes >> 20,
        }
    }
}

/// TOML table keys are strings; node ids are numbers.
fn node_id_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<u64, String>, D::Error> {
    let raw = BTreeMap::<String, String>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            k.parse::<u64>().map(|id| (id, v)).map_err(|_| {
                serde::de::Error::custom(format!("initial_members key {k:?} is not a node id"))
            })
        })
        .collect()
}

/// A member as written in `initial_members`: `DEPT@host:port`.
pub fn parse_member(setting: &str, value: &str) -> Result<(String, String), ConfigError> {
    let (dept, addr) = value
        .split_once('@')
        .ok_or_else(|| invalid(setting, format!("{value:?} is not DEPT@host:port")))?;
    concord_domain::validate::department_code(setting, dept)
        .map_err(|e| invalid(setting, e.to_string()))?;
    check_addr(setting, addr)?;
    Ok((dept.to_string(), addr.to_string()))
}

fn check_addr(setting: &str, addr: &str) -> Result<(), ConfigError> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| invalid(setting, format!("{addr:?} is not host:port")))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid(setting, format!("{addr:?} is not host:port")));
    }
    Ok(())
}

/// A pod of a Kubernetes StatefulSet learns who it is from its index
/// (`CONCORD_POD_INDEX`, from the `apps.kubernetes.io/pod-index` label): pod `i`
/// is node `i + 1` of department `CONCORD_DEPARTMENTS[i]`, reached at
/// `CONCORD_PEER_TEMPLATE` with `{index}` replaced. Pod 0 bootstraps, with the first
/// `CONCORD_VOTERS` pods (default 3) as the initial members. `{department}` in the
/// TLS paths is replaced, so one Secret holds every department's node certificate.
fn statefulset_identity(
    table: &mut toml::Table,
    index: &str,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let index: usize = index
        .parse()
        .map_err(|_| invalid("CONCORD_POD_INDEX", format!("{index:?} is not a number")))?;
    let departments: Vec<&str> = env
        .get("CONCORD_DEPARTMENTS")
        .map(|d| {
            d.split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let department = departments.get(index).ok_or_else(|| {
        invalid(
            "CONCORD_POD_INDEX",
            format!(
                "pod {index} has no department: CONCORD_DEPARTMENTS lists {}",
                departments.len()
            ),
        )
    })?;
    let template = env.get("CONCORD_PEER_TEMPLATE").ok_or_else(|| {
        invalid(
            "CONCORD_PEER_TEMPLATE",
            "is required with CONCORD_POD_INDEX, e.g. concord-{index}.concord-peers:7000",
        )
    })?;
    let voters: usize = match env.get("CONCORD_VOTERS") {
        Some(v) => v
            .parse()
            .map_err(|_| invalid("CONCORD_VOTERS", format!("{v:?} is not a number")))?,
        None => 3,
    };
    let peer = |i: usize| template.replace("{index}", &i.to_string());
    table.insert("node_id".into(), toml::Value::Integer(index as i64 + 1));
    table.insert(
        "department".into(),
        toml::Value::String(department.to_string()),
    );
    table.insert("advertise".into(), toml::Value::String(peer(index)));
    table
        .entry("bootstrap")
        .or_insert(toml::Value::Boolean(index == 0));
    let mut members = toml::Table::new();
    for (i, d) in departments.iter().enumerate().take(voters.max(1)) {
        members.insert(
            (i + 1).to_string(),
            toml::Value::String(format!("{d}@{}", peer(i))),
        );
    }
    table.insert("initial_members".into(), toml::Value::Table(members));
    // The leader keeps the voter count and removes the pods a scale-down took away
    // (node ids above the department list), so scaling needs no operator.
    let mut target = toml::Table::new();
    target.insert("voters".into(), toml::Value::Integer(voters.max(1) as i64));
    target.insert(
        "max_node_id".into(),
        toml::Value::Integer(departments.len() as i64),
    );
    target.insert(
        "peer_template".into(),
        toml::Value::String(template.clone()),
    );
    match table
        .entry("membership")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
    {
        toml::Value::Table(m) => {
            for (k, v) in target {
                m.entry(k).or_insert(v);
            }
        }
        _ => return Err(invalid("membership", "must be a table")),
    }
    // Every pod asks the first voters to add it until it is a member: pods beyond
    // the voters join as learners, and so does a pod below a `voters` raised after
    // the cluster began (the leader then promotes it). An initial voter finds
    // itself a member once pod 0 initialises and stops asking. Pod 0 asks before
    // initialising, so an empty disk does not start a second cluster.
    let seeds: Vec<toml::Value> = (0..voters.max(1).min(departments.len()))
        .filter(|i| *i != index)
        .map(|i| toml::Value::String(peer(i)))
        .collect();
    if !seeds.is_empty() {
        table.insert("join".into(), toml::Value::Array(seeds));
    }
    if let Some(toml::Value::Table(tls)) = table.get_mut("tls") {
        for key in ["ca", "cert", "key", "ca_key"] {
            if let Some(toml::Value::String(p)) = tls.get_mut(key) {
                *p = p.replace("{department}", department);
            }
        }
        if let Some(toml::Value::Array(hosts)) = tls.get_mut("hosts") {
            for h in hosts.iter_mut() {
                if let toml::Value::String(s) = h {
                    *s = s.replace("{department}", &department.to_lowercase());
                }
            }
        }
    }
    Ok(())
}

impl NodeConfig {
    /// Reads `path` (if given), applies `CONCORD_*` overrides from `env`, validates.
    pub fn load(
        path: Option<&std::path::Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<NodeConfig, ConfigError> {
        let mut table: toml::Table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.into(),
                    source,
                })?;
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Parse {
                        path: p.into(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        let overrides: [(&str, &str, bool); 15] = [
            ("CONCORD_NODE_ID", "node_id", true),
            ("CONCORD_DEPARTMENT", "department", false),
            ("CONCORD_LISTEN", "listen", false),
            ("CONCORD_ADVERTISE", "advertise", false),
            ("CONCORD_OPS_LISTEN", "ops_listen", false),
            ("CONCORD_JOIN", "join", false),
            ("CONCORD_DATA_DIR", "data_dir", false),
            ("CONCORD_BOOTSTRAP", "bootstrap", false),
            ("CONCORD_INITIAL_MEMBERS", "initial_members", false),
            ("CONCORD_TLS_CA", "tls.ca", false),
            ("CONCORD_TLS_CERT", "tls.cert", false),
            ("CONCORD_TLS_KEY", "tls.key", false),
            ("CONCORD_TLS_CA_KEY", "tls.ca_key", false),
            ("CONCORD_TLS_HOSTS", "tls.hosts", false),
            ("CONCORD_INSECURE", "tls.insecure", false),
        ];
        for (var, key, numeric) in overrides {
            let Some(value) = env.get(var) else { continue };
            let v = match key {
                "bootstrap" | "tls.insecure" => toml::Value::Boolean(match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(invalid(var, format!("{value:?} is not true or false"))),
                }),
                "join" | "tls.hosts" => toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_string()))
                        .collect(),
                ),
                "initial_members" => {
                    // "1=SAMR@host:7001,2=TRANS@host:7002"
                    let mut members = toml::Table::new();
                    for part in value.split(',').filter(|p| !p.trim().is_empty()) {
                        let (id, member) = part.trim().split_once('=').ok_or_else(|| {
                            invalid(var, format!("{part:?} is not ID=DEPT@host:port"))
                        })?;
                        members.insert(id.to_string(), toml::Value::String(member.to_string()));
                    }
                    toml::Value::Table(members)
                }
                _ if numeric => toml::Value::Integer(
                    value
                        .parse()
                        .map_err(|_| invalid(var, format!("{value:?} is not a number")))?,
                ),
                _ => toml::Value::String(value.clone()),
            };
            match key.split_once('.') {
                Some((section, field)) => {
                    let entry = table
                        .entry(section.to_string())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    let toml::Value::Table(t) = entry else {
                        return Err(invalid(section, "must be a table"));
                    };
                    t.insert(field.to_string(), v);
                }
                None => {
                    table.insert(key.to_string(), v);
                }
            }
        }
        if let Some(index) = env.get("CONCORD_POD_INDEX") {
            statefulset_identity(&mut table, index, env)?;
        }
        let source = path
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("<environment>"));
        // initial_members keys are node ids: TOML tables have string keys.
        let mut config: NodeConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: source,
                    message: e.to_string(),
                })?;
        if config.advertise.is_empty() {
            config.advertise = config.listen.clone();
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("node_id", "must be a positive integer"));
        }
        concord_domain::validate::department_code("department", &self.department)
            .map_err(|e| invalid("department", e.to_string()))?;
        check_addr("listen", &self.listen)?;
        check_addr("advertise", &self.advertise)?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must be set"));
        }
        if self.bootstrap {
            if self.initial_members.is_empty() {
                return Err(invalid(
                    "initial_members",
                    "required when bootstrap is true",
                ));
            }
            if !self.initial_members.contains_key(&self.node_id) {
                return Err(invalid(
                    "initial_members",
                    format!("must include this node ({})", self.node_id),
                ));
            }
        }
        for (id, member) in &self.initial_members {
            let setting = format!("initial_members.{id}");
            if *id == 0 {
                return Err(invalid(&setting, "node ids must be positive"));
            }
            parse_member(&setting, member)?;
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 || r.election_timeout_min_ms <= r.heartbeat_ms * 2 {
            return Err(invalid(
                "raft.election_timeout_min_ms",
                "must be more than twice raft.heartbeat_ms",
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return Err(invalid(
                "raft.election_timeout_max_ms",
                "must be greater than raft.election_timeout_min_ms",
            ));
        }
        if r.snapshot_after_entries == 0 {
            return Err(invalid("raft.snapshot_after_entries", "must be positive"));
        }
        if r.snapshot_log_percent > 1000 {
            return Err(invalid(
                "raft.snapshot_log_percent",
                "must be at most 1000 (a log ten times the snapshot)",
            ));
        }
        if r.snapshot_chunk_bytes < 4096 {
            return Err(invalid(
                "raft.snapshot_chunk_bytes",
                "must be at least 4096",
            ));
        }
        if r.install_snapshot_timeout_ms == 0 {
            return Err(invalid(
                "raft.install_snapshot_timeout_ms",
                "must be positive",
            ));
        }
        if r.install_snapshot_min_mib_per_s == 0 {
            return Err(invalid(
                "raft.install_snapshot_min_mib_per_s",
                "must be positive",
            ));
        }
        if self.limits.max_request_bytes < 1024 {
            return Err(invalid("limits.max_request_bytes", "must be at least 1024"));
        }
        if !self.tls.insecure {
            for (setting, path) in [
                ("tls.ca", &self.tls.ca),
                ("tls.cert", &self.tls.cert),
                ("tls.key", &self.tls.key),
            ] {
                if path.as_os_str().is_empty() {
                    return Err(invalid(
                        setting,
                        "required (mutual TLS is the default; tls.insecure = true runs plaintext for development)",
                    ));
                }
            }
        }
        if self.tls.reload_interval_ms == 0 {
            return Err(invalid("tls.reload_interval_ms", "must be positive"));
        }
        if self.housekeeping.tick_interval_ms == 0 {
            return Err(invalid("housekeeping.tick_interval_ms", "must be positive"));
        }
        if !(1..=65_536).contains(&self.storage.cache_mib) {
            return Err(invalid("storage.cache_mib", "must be 1 to 65536"));
        }
        if !(1..=1024).contains(&self.storage.memtable_mib) {
            return Err(invalid("storage.memtable_mib", "must be 1 to 1024"));
        }
        let m = &self.membership;
        if m.voters == Some(0) {
            return Err(invalid("membership.voters", "must be at least 1"));
        }
        if m.max_node_id == Some(0) {
            return Err(invalid("membership.max_node_id", "must be at least 1"));
        }
        if let Some(t) = &m.peer_template {
            if !t.contains("{index}") {
                return Err(invalid("membership.peer_template", "must contain {index}"));
            }
        }
        if m.interval_ms == 0 {
            return Err(invalid("membership.interval_ms", "must be positive"));
        }
        Ok(())
    }

    pub fn openraft_config(&self) -> openraft::Config {
        let r = &self.raft;
        openraft::Config {
            cluster_name: "concord".into(),
            heartbeat_interval: r.heartbeat_ms,
            election_timeout_min: r.election_timeout_min_ms,
            election_timeout_max: r.election_timeout_max_ms,
            // Both decided by `compaction`, which weighs bytes and lagging peers.
            snapshot_policy: openraft::SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: u64::MAX,
            snapshot_max_chunk_size: r.snapshot_chunk_bytes,
            // The network applies the real limits (`snapshot_timeouts`): openraft's
            // one value would also bound the final chunk, which lasts the whole install.
            install_snapshot_timeout: 24 * 3600 * 1000,
            max_payload_entries: r.max_payload_entries,
            ..Default::default()
        }
    }

    pub fn snapshot_timeouts(&self) -> crate::network::SnapshotTimeouts {
        crate::network::SnapshotTimeouts {
            chunk: std::time::Duration::from_millis(self.raft.install_snapshot_timeout_ms),
            install_bytes_per_s: self.raft.install_snapshot_min_mib_per_s << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_alone_configures_a_node() {
        let c = NodeConfig::load(
            None,
            &env(&[
                ("CONCORD_NODE_ID", "2"),
                ("CONCORD_DEPARTMENT", "TRANS"),
                ("CONCORD_LISTEN", "0.0.0.0:7002"),
                ("CONCORD_ADVERTISE", "concord-1.concord:7002"),
                ("CONCORD_DATA_DIR", "/data"),
                ("CONCORD_BOOTSTRAP", "true"),
                ("CONCORD_INITIAL_MEMBERS", "1=SAMR@a:7001,2=TRANS@b:7002"),
                ("CONCORD_TLS_CA", "/pki/ca.pem"),
                ("CONCORD_TLS_CERT", "/pki/TRANS-node-n2.pem"),
                ("CONCORD_TLS_KEY", "/pki/TRANS-node-n2.key"),
            ]),
        )
        .unwrap();
        assert_eq!(c.node_id, 2);
        assert_eq!(c.advertise, "concord-1.concord:7002");
        assert_eq!(c.tls.cert, PathBuf::from("/pki/TRANS-node-n2.pem"));
        assert!(!c.tls.insecure);
        assert_eq!(
            c.initial_members.get(&1).map(String::as_str),
            Some("SAMR@a:7001")
        );
    }

    #[test]
    fn a_statefulset_pod_learns_its_identity_from_its_index() {
        let pod = |index: &str| {
            NodeConfig::load(
                None,
                &env(&[
                    ("CONCORD_POD_INDEX", index),
                    ("CONCORD_DEPARTMENTS", "SAMR,TRANS,JUST,ECO"),
                    ("CONCORD_VOTERS", "3"),
                    (
                        "CONCORD_PEER_TEMPLATE",
                        "concord-{index}.concord-peers.gov.svc:7000",
                    ),
                    ("CONCORD_LISTEN", "0.0.0.0:7000"),
                    ("CONCORD_DATA_DIR", "/data"),
                    ("CONCORD_TLS_CA", "/pki/ca.pem"),
                    ("CONCORD_TLS_CERT", "/pki/{department}-node.pem"),
                    ("CONCORD_TLS_KEY", "/pki/{department}-node.key"),
                ]),
            )
        };
        let first = pod("0").unwrap();
        assert_eq!((first.node_id, first.department.as_str()), (1, "SAMR"));
        assert!(first.bootstrap);
        assert_eq!(first.advertise, "concord-0.concord-peers.gov.svc:7000");
        assert_eq!(first.initial_members.len(), 3);
        assert_eq!(
            first.initial_members[&3],
            "JUST@concord-2.concord-peers.gov.svc:7000"
        );
        assert_eq!(first.join.len(), 2, "pod 0 asks the other voters first");
        // An initial voter asks too: with `voters` raised in an upgrade, a new pod
        // below it is no initial member and must join.
        assert_eq!(pod("1").unwrap().join.len(), 2);
        let fourth = pod("3").unwrap();
        assert_eq!((fourth.node_id, fourth.department.as_str()), (4, "ECO"));
        assert!(!fourth.bootstrap);
        assert_eq!(fourth.join.len(), 3, "a learner joins through the voters");
        assert_eq!(fourth.tls.cert, PathBuf::from("/pki/ECO-node.pem"));
        // The leader keeps 3 voters and removes pods beyond the 4 departments.
        assert_eq!(fourth.membership.voters, Some(3));
        assert_eq!(fourth.membership.max_node_id, Some(4));
        assert_eq!(
            fourth.membership.peer_template.as_deref(),
            Some("concord-{index}.concord-peers.gov.svc:7000")
        );
        // A pod beyond the department list is refused, naming the setting.
        let e = pod("4").unwrap_err().to_string();
        assert!(e.contains("CONCORD_POD_INDEX"), "{e}");
    }

    #[test]
    fn mistakes_name_the_setting() {
        let base = [
            ("CONCORD_NODE_ID", "1"),
            ("CONCORD_DEPARTMENT", "SAMR"),
            ("CONCORD_DATA_DIR", "/d"),
            ("CONCORD_INSECURE", "true"),
        ];
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("CONCORD_LISTEN", "nonsense")], "listen"),
            (
                &[("CONCORD_LISTEN", "h:1"), ("CONCORD_BOOTSTRAP", "true")],
                "initial_members",
            ),
            (
                &[("CONCORD_LISTEN", "h:1"), ("CONCORD_BOOTSTRAP", "maybe")],
                "CONCORD_BOOTSTRAP",
            ),
            (
                &[
                    ("CONCORD_LISTEN", "h:1"),
                    ("CONCORD_INITIAL_MEMBERS", "1=samr@h:1"),
                ],
                "initial_members.1",
            ),
        ];
        for (extra, setting) in cases {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            let err = NodeConfig::load(None, &env(&all)).unwrap_err().to_string();
            assert!(err.contains(setting), "{err} should name {setting}");
        }
        let mut secure = base[..3].to_vec();
        secure.push(("CONCORD_LISTEN", "h:1"));
        let err = NodeConfig::load(None, &env(&secure))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.ca"), "{err}");
        let err = NodeConfig::load(None, &env(&[("CONCORD_NODE_ID", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("CONCORD_NODE_ID"), "{err}");
        let mut ok = base.to_vec();
        ok.push(("CONCORD_LISTEN", "h:1"));
        let mut c = NodeConfig::load(None, &env(&ok)).unwrap();
        assert_eq!(c.storage, Storage::default());
        c.storage.memtable_mib = 0;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("storage.memtable_mib"), "{err}");
        c.storage = Storage {
            cache_mib: 0,
            ..Storage::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("storage.cache_mib"), "{err}");
    }
}
