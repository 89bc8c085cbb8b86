//! Log entries for the state machine's tests: the departments' bootstrap, then
//! pushes from one department to the next, as `bench --apply` applies them.

use concord_domain::department::default_departments;
use concord_domain::{Command, Envelope, Principal};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

use crate::TypeConfig;

const DEPARTMENTS: [&str; 3] = ["SAMR", "TRANS", "JUST"];

/// Entry `index` of the log, carrying push `push` under request id `r-<push>`
/// (push 1 is the bootstrap). The same `push` at another index is its retry.
pub(crate) fn entry(index: u64, push: u64) -> anyhow::Result<Entry<TypeConfig>> {
    let (actor, command) = if push == 1 {
        let departments = default_departments();
        ("SAMR", Command::Bootstrap { departments })
    } else {
        let from = DEPARTMENTS[push as usize % 3];
        let to = DEPARTMENTS[(push as usize + 1) % 3];
        let case = serde_json::from_value(serde_json::json!({
            "kind": "clue", "source": "hotline12345", "source_ref": format!("t-{push}"),
            "uscc": "91140311729YDWUJ0U", "title": "加油站夜间违规卸油",
            "description": "store test", "evidence": [], "to": [to], "priority": "normal",
        }))?;
        (from, Command::PushCase { case })
    };
    Ok(Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Envelope {
            actor: actor.into(),
            principal: Principal::Member,
            request_id: format!("r-{push}"),
            timestamp_ms: 1_700_000_000_000 + index as i64,
            command,
        }),
    })
}
