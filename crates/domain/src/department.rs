use serde::{Deserialize, Serialize};

use crate::validate;
use crate::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepartmentKind {
    Administrative,
    Judicial,
    Other,
}

/// What a department may do beyond acting for itself. Part of the replicated state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    LegalityReviewer,
    Arbiter,
    CreditAuthority,
    LicensingRegistrar,
    LicensingBureau,
    PlatformOperator,
    CriminalIntake,
}

/// The fields a caller supplies to register or update a department.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentSpec {
    pub code: String,
    pub name: String,
    pub name_en: String,
    pub kind: DepartmentKind,
    /// Sorted and distinct once validated.
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredDepartment")]
pub struct Department {
    #[serde(flatten)]
    pub spec: DepartmentSpec,
    pub created_revision: u64,
    pub updated_revision: u64,
}

/// A department record as stored: the same JSON, read without `flatten`, which
/// buffers every field before it decodes any. Nearly every command reads the
/// actor's record, and a case push the receiver's too (`perf` of
/// `concord bench --apply`).
#[derive(Deserialize)]
struct StoredDepartment {
    code: String,
    name: String,
    name_en: String,
    kind: DepartmentKind,
    roles: Vec<Role>,
    created_revision: u64,
    updated_revision: u64,
}

impl From<StoredDepartment> for Department {
    fn from(d: StoredDepartment) -> Department {
        Department {
            spec: DepartmentSpec {
                code: d.code,
                name: d.name,
                name_en: d.name_en,
                kind: d.kind,
                roles: d.roles,
            },
            created_revision: d.created_revision,
            updated_revision: d.updated_revision,
        }
    }
}

impl Department {
    pub fn code(&self) -> &str {
        &self.spec.code
    }
    pub fn has_role(&self, role: Role) -> bool {
        self.spec.roles.contains(&role)
    }
}

impl DepartmentSpec {
    /// Checks every field; `prefix` is the field path of the spec in the request.
    pub fn validate(&self, prefix: &str) -> Result<(), DomainError> {
        validate::department_code(&format!("{prefix}.code"), &self.code)?;
        validate::required_text(
            &format!("{prefix}.name"),
            &self.name,
            validate::MAX_SHORT_CHARS,
        )?;
        validate::optional_text(
            &format!("{prefix}.name_en"),
            &self.name_en,
            validate::MAX_SHORT_CHARS,
        )?;
        let mut seen = self.roles.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.roles.len() {
            return Err(DomainError::invalid(
                format!("{prefix}.roles"),
                "must not repeat a role",
            ));
        }
        Ok(())
    }

    /// Roles in one canonical order, so equal specs encode identically on every node.
    pub fn normalized(mut self) -> Self {
        self.roles.sort();
        self
    }
}

/// The departments a new cluster is seeded with: the city departments of the plan
/// (`shared/domain/sample-data.json`), with JUST as legality reviewer and arbiter and
/// NDRC as credit authority.
pub fn default_departments() -> Vec<DepartmentSpec> {
    use DepartmentKind::*;
    use Role::*;
    let d = |code: &str, name: &str, name_en: &str, kind, roles: &[Role]| DepartmentSpec {
        code: code.into(),
        name: name.into(),
        name_en: name_en.into(),
        kind,
        roles: roles.to_vec(),
    };
    vec![
        d(
            "SAMR",
            "市市场监督管理局",
            "Market Regulation Bureau",
            Administrative,
            &[LicensingRegistrar],
        ),
        d(
            "TRANS",
            "市交通运输局",
            "Transport Bureau",
            Administrative,
            &[],
        ),
        d(
            "JUST",
            "市司法局",
            "Justice Bureau",
            Administrative,
            &[LegalityReviewer, Arbiter],
        ),
        d(
            "ECO",
            "市生态环境局",
            "Ecology and Environment Bureau",
            Administrative,
            &[],
        ),
        d(
            "EMER",
            "市应急管理局",
            "Emergency Management Bureau",
            Administrative,
            &[],
        ),
        d(
            "HEALTH",
            "市卫生健康委员会",
            "Health Commission",
            Administrative,
            &[],
        ),
        d(
            "HOUSING",
            "市住房和城乡建设局",
            "Housing and Urban-Rural Development Bureau",
            Administrative,
            &[],
        ),
        d(
            "URBAN",
            "市城市管理局",
            "Urban Management Bureau",
            Administrative,
            &[],
        ),
        d(
            "AGRI",
            "市农业农村局",
            "Agriculture and Rural Affairs Bureau",
            Administrative,
            &[],
        ),
        d(
            "WATER",
            "市水利局",
            "Water Resources Bureau",
            Administrative,
            &[],
        ),
        d(
            "NDRC",
            "市发展和改革委员会",
            "Development and Reform Commission",
            Administrative,
            &[CreditAuthority],
        ),
        d(
            "APPROVAL",
            "市行政审批服务管理局",
            "Administrative Approval Bureau",
            Administrative,
            &[LicensingBureau],
        ),
        d(
            "BIGDATA",
            "市大数据应用局",
            "Big Data Bureau",
            Administrative,
            &[PlatformOperator],
        ),
        d(
            "PSB",
            "市公安局",
            "Public Security Bureau",
            Judicial,
            &[CriminalIntake],
        ),
    ]
    .into_iter()
    .map(DepartmentSpec::normalized)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records written by every earlier build read back the same, and are written
    /// the same: replicas of mixed builds hold identical bytes.
    #[test]
    fn a_department_record_reads_and_writes_the_stored_json() -> Result<(), serde_json::Error> {
        let stored = r#"{"code":"SAMR","name":"市市场监督管理局","name_en":"Market Regulation Bureau","kind":"administrative","roles":["arbiter","licensing_registrar"],"created_revision":2,"updated_revision":9}"#;
        let d: Department = serde_json::from_str(stored)?;
        assert_eq!(
            d,
            Department {
                spec: DepartmentSpec {
                    code: "SAMR".into(),
                    name: "市市场监督管理局".into(),
                    name_en: "Market Regulation Bureau".into(),
                    kind: DepartmentKind::Administrative,
                    roles: vec![Role::Arbiter, Role::LicensingRegistrar],
                },
                created_revision: 2,
                updated_revision: 9,
            }
        );
        assert_eq!(serde_json::to_string(&d)?, stored);
        let missing = stored.replace(r#","updated_revision":9"#, "");
        assert!(serde_json::from_str::<Department>(&missing).is_err());
        Ok(())
    }
}
