//! Case hand-offs through `apply`: the closed loop end to end, every rejection and
//! escalation path, every illegal transition (generated from the step table), and
//! deadlines driven by a controlled clock through the tick.

mod common;
use common::*;

use concord_domain::case::{CaseAction, CaseStatus, Resolution};
use concord_domain::state::keys;
use concord_domain::{tick_due, Command, DomainError, Outcome};

const HOUR: i64 = 3_600_000;

fn step(w: &mut World, by: &str, id: &str, action: CaseAction) -> concord_domain::case::Case {
    let rid = format!("s-{}", w.revision);
    match w
        .run(
            by,
            &rid,
            Command::CaseStep {
                id: id.into(),
                action,
            },
        )
        .result
    {
        Ok(Outcome::Case(c)) => c,
        other => panic!("{by}: {other:?}"),
    }
}

fn resolve() -> CaseAction {
    CaseAction::Resolve {
        resolution: Resolution {
            outcome: "责令改正".into(),
            measures: "立案查处".into(),
            penalty_ref: "阳交罚〔2026〕12号".into(),
        },
    }
}

#[test]
fn a_case_goes_round_the_loop_and_every_step_is_recorded() {
    let mut w = World::new();
    let cases = match w
        .run(
            "SAMR",
            "push",
            Command::PushCase {
                case: case_spec(&["TRANS", "EMER"]),
            },
        )
        .result
    {
        Ok(Outcome::Cases(c)) => c,
        other => panic!("{other:?}"),
    };
    // A hand-off to two departments: two linked cases.
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0].handoff, cases[1].handoff);
    let id = cases[0].id.clone();
    let c = step(&mut w, "TRANS", &id, CaseAction::Acknowledge);
    assert!(c.acknowledged_at_ms.is_some());
    // Rejected, re-routed to EMER... who also rejects; escalated; the arbiter assigns.
    step(
        &mut w,
        "TRANS",
        &id,
        CaseAction::Reject {
            reason: "不属本部门".into(),
        },
    );
    let c = step(
        &mut w,
        "SAMR",
        &id,
        CaseAction::Reroute {
            to: "HEALTH".into(),
            reason: "改派卫健".into(),
        },
    );
    assert_eq!((c.status, c.to.as_str()), (CaseStatus::Pushed, "HEALTH"));
    step(
        &mut w,
        "HEALTH",
        &id,
        CaseAction::Reject {
            reason: "亦不属本部门".into(),
        },
    );
    step(
        &mut w,
        "SAMR",
        &id,
        CaseAction::Escalate {
            reason: "职责争议".into(),
        },
    );
    let c = step(
        &mut w,
        "JUST",
        &id,
        CaseAction::Assign {
            to: "TRANS".into(),
            reason: "依《道路运输条例》属交通".into(),
        },
    );
    assert_eq!((c.status, c.to.as_str()), (CaseStatus::InProgress, "TRANS"));
    // Resolved, returned for rework, resolved again, confirmed.
    step(&mut w, "TRANS", &id, resolve());
    step(
        &mut w,
        "SAMR",
        &id,
        CaseAction::ReturnForRework {
            reason: "未附处罚决定".into(),
        },
    );
    step(&mut w, "TRANS", &id, resolve());
    let c = step(
        &mut w,
        "SAMR",
        &id,
        CaseAction::ConfirmFeedback {
            note: "确认办结".into(),
        },
    );
    assert_eq!(c.status, CaseStatus::Closed);
    let actions: Vec<(&str, &str)> = c
        .steps
        .iter()
        .map(|s| (s.action.as_str(), s.by.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("push", "SAMR"),
            ("acknowledge", "TRANS"),
            ("reject", "TRANS"),
            ("reroute", "SAMR"),
            ("reject", "HEALTH"),
            ("escalate", "SAMR"),
            ("assign", "JUST"),
            ("resolve", "TRANS"),
            ("return_for_rework", "SAMR"),
            ("resolve", "TRANS"),
            ("confirm_feedback", "SAMR"),
        ]
    );
    // Closed: nothing waits on anyone, and nothing is due.
    assert!(w
        .state
        .map
        .keys()
        .all(|k| !k.starts_with(&format!("caseaw/")) || !k.ends_with(&id)));
    assert!(w
        .state
        .map
        .keys()
        .all(|k| !(k.starts_with("casedue/") && k.ends_with(&id))));
    // A department outside the other case does not even learn it exists; one
    // inside it but on the wrong side is refused.
    let other = cases[1].id.clone();
    let e = w.err(
        "TRANS",
        Command::CaseStep {
            id: other.clone(),
            action: CaseAction::Accept,
        },
    );
    assert!(matches!(e, DomainError::NotFound { .. }), "{e:?}");
    let e = w.err(
        "EMER",
        Command::CaseStep {
            id: other,
            action: CaseAction::Escalate { reason: "x".into() },
        },
    );
    assert!(matches!(e, DomainError::PermissionDenied { .. }), "{e:?}");
}

#[test]
fn every_illegal_step_is_a_failed_precondition() {
    let statuses = [
        CaseStatus::Pushed,
        CaseStatus::Rejected,
        CaseStatus::Escalated,
        CaseStatus::InProgress,
        CaseStatus::Resolved,
        CaseStatus::Closed,
    ];
    let actions: Vec<(&str, CaseAction)> = vec![
        ("TRANS", CaseAction::Acknowledge),
        ("TRANS", CaseAction::Accept),
        ("TRANS", CaseAction::Reject { reason: "r".into() }),
        (
            "SAMR",
            CaseAction::Reroute {
                to: "EMER".into(),
                reason: "r".into(),
            },
        ),
        ("SAMR", CaseAction::Escalate { reason: "r".into() }),
        (
            "JUST",
            CaseAction::Assign {
                to: "EMER".into(),
                reason: "r".into(),
            },
        ),
        ("TRANS", resolve()),
        (
            "SAMR",
            CaseAction::ConfirmFeedback {
                note: String::new(),
            },
        ),
        ("SAMR", CaseAction::ReturnForRework { reason: "r".into() }),
        (
            "TRANS",
            CaseAction::TransferToJudicial {
                to: "PSB".into(),
                documents: transfer_documents(),
                reason: "r".into(),
            },
        ),
    ];
    let (mut legal, mut illegal) = (0, 0);
    for status in statuses {
        for (by, action) in &actions {
            let mut w = World::new();
            let id = case_in(&mut w, status);
            let allowed = action.from_statuses().contains(&status);
            let rid = format!("x-{}", w.revision);
            let r = w.run(
                by,
                &rid,
                Command::CaseStep {
                    id: id.clone(),
                    action: action.clone(),
                },
            );
            if allowed {
                assert!(
                    r.result.is_ok(),
                    "{} in {status:?}: {:?}",
                    action.name(),
                    r.result
                );
                legal += 1;
            } else {
                let e = w.err(
                    by,
                    Command::CaseStep {
                        id,
                        action: action.clone(),
                    },
                );
                assert!(
                    matches!(e, DomainError::FailedPrecondition { .. }),
                    "{} in {status:?}: {e:?}",
                    action.name()
                );
                illegal += 1;
            }
        }
    }
    assert_eq!(legal + illegal, statuses.len() * actions.len());
    eprintln!("case steps: {legal} legal and {illegal} illegal status × step pairs checked");
}

#[test]
fn a_stage_is_overdue_exactly_when_due_with_a_reminder_before() {
    let mut w = World::new();
    let pushed_at = w.now + 1000;
    let id = case_in(&mut w, CaseStatus::Pushed);
    let due = pushed_at + 72 * HOUR;
    let tick = |w: &mut World| {
        w.run(
            "SAMR",
            "",
            Command::Tick {
                dedup_retention_ms: i64::MAX / 4,
            },
        )
    };
    let notices = |w: &World, d: &str| -> Vec<String> {
        w.state
            .map
            .iter()
            .filter(|(k, _)| k.starts_with(&keys::case_notices(d)))
            .map(|(_, v)| {
                serde_json::from_slice::<serde_json::Value>(v).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    // 48 h in (24 h before the deadline): a reminder to TRANS only.
    w.now = due - 24 * HOUR - 1;
    assert!(!tick_due(&w.state, w.now, i64::MAX / 4).unwrap());
    w.now += 1;
    assert!(tick_due(&w.state, w.now, i64::MAX / 4).unwrap());
    tick(&mut w);
    assert_eq!(notices(&w, "TRANS"), vec!["reminder"]);
    assert!(notices(&w, "SAMR").is_empty());
    // One millisecond before the deadline: not overdue.
    w.now = due - 1;
    assert!(!tick_due(&w.state, w.now, i64::MAX / 4).unwrap());
    let case = concord_domain::query::case(&w.state, &id).unwrap();
    assert!(!case.overdue);
    // At the deadline: overdue, and the handler, the originator and the arbiter hear of it.
    w.now = due;
    assert!(tick_due(&w.state, w.now, i64::MAX / 4).unwrap());
    tick(&mut w);
    let case = concord_domain::query::case(&w.state, &id).unwrap();
    assert!(case.overdue);
    for d in ["TRANS", "SAMR", "JUST"] {
        assert!(notices(&w, d).contains(&"overdue".to_string()), "{d}");
    }
    assert!(notices(&w, "EMER").is_empty());
    // Accepting starts the next stage with its own deadline.
    let c = step(&mut w, "TRANS", &id, CaseAction::Accept);
    assert!(!c.overdue);
    assert_eq!(c.due_ms, w.now + 360 * HOUR);
}

#[test]
fn two_cases_due_in_one_tick_each_leave_their_notice_and_a_reminder_goes_out_once() {
    let mut w = World::new();
    let a = case_in(&mut w, CaseStatus::Pushed);
    let b = case_in(&mut w, CaseStatus::Pushed);
    let notices = |w: &World, d: &str| -> Vec<(String, String)> {
        concord_domain::query::case_notices(&w.state, d)
            .unwrap()
            .into_iter()
            .map(|n| (n.case_id, n.kind))
            .collect()
    };
    let tick = |w: &mut World| {
        w.run(
            "SAMR",
            "",
            Command::Tick {
                dedup_retention_ms: i64::MAX / 4,
            },
        );
    };
    // Both reminders fall due in the same tick.
    w.now += 60 * HOUR;
    tick(&mut w);
    assert_eq!(
        notices(&w, "TRANS"),
        vec![
            (a.clone(), "reminder".into()),
            (b.clone(), "reminder".into())
        ]
    );
    // Acknowledging after the reminder does not send it again.
    step(&mut w, "TRANS", &a, CaseAction::Acknowledge);
    w.now += HOUR;
    assert!(!tick_due(&w.state, w.now, i64::MAX / 4).unwrap());
    // Both deadlines pass in one tick: the originator keeps a notice for each.
    w.now += 12 * HOUR;
    tick(&mut w);
    let samr = notices(&w, "SAMR");
    assert_eq!(
        samr,
        vec![(a.clone(), "overdue".into()), (b.clone(), "overdue".into())]
    );
    // The overdue mark is on the case's own record too.
    let c = concord_domain::query::case(&w.state, &a).unwrap();
    assert_eq!(c.steps.last().unwrap().action, "overdue");
}

#[test]
fn a_risk_warning_carries_a_level_and_runs_on_its_own_deadlines() {
    use concord_domain::case::{CaseKind, CaseSource, WarningLevel};
    let mut w = World::new();
    let mut spec = case_spec(&["TRANS", "EMER"]);
    spec.kind = CaseKind::RiskWarning;
    spec.source = CaseSource::RiskWarningModel;
    // A warning without a level is refused, naming the field.
    let e = w.err("SAMR", Command::PushCase { case: spec.clone() });
    assert!(
        matches!(&e, DomainError::InvalidArgument { field, .. } if field == "case.level"),
        "{e:?}"
    );
    spec.level = Some(WarningLevel::Orange);
    spec.entities = vec![ENTITIES[1].0.into(), ENTITIES[2].0.into()];
    let now = w.now + 1000;
    let cases = match w
        .run("SAMR", "warn", Command::PushCase { case: spec })
        .result
    {
        Ok(Outcome::Cases(c)) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(cases.len(), 2);
    // Verify (accept) within 24 h, not the 72 h of a clue.
    assert_eq!(cases[0].due_ms, now + 24 * HOUR);
    assert_eq!(cases[0].spec.entities.len(), 2);
}

/// The departments a case push as SAMR to TRANS tells, from the event it emits.
fn push_audience(w: &mut World) -> Vec<String> {
    w.revision += 1;
    w.now += 1000;
    let env = concord_domain::Envelope {
        actor: "SAMR".into(),
        principal: concord_domain::Principal::Member,
        request_id: format!("push-{}", w.revision),
        timestamp_ms: w.now,
        command: Command::PushCase {
            case: case_spec(&["TRANS"]),
        },
    };
    let t = concord_domain::apply(&w.state, &env, w.revision).unwrap();
    assert!(t.response.result.is_ok(), "{:?}", t.response);
    w.state.apply_writes(&t.writes);
    let case_events: Vec<_> = t
        .events
        .iter()
        .filter(|e| e.kind == concord_domain::event::RecordKind::Case)
        .collect();
    assert_eq!(case_events.len(), 1);
    case_events[0].departments.clone()
}

#[test]
fn the_arbiters_a_case_tells_follow_the_registry_with_or_without_the_derived_key() {
    use concord_domain::department::{default_departments, Role};
    let mut w = World::new();
    assert_eq!(push_audience(&mut w), vec!["JUST", "SAMR", "TRANS"]);
    // A second arbiter is told from its registration on.
    let mut tax = default_departments()
        .into_iter()
        .find(|d| d.code == "EMER")
        .unwrap();
    tax.roles.push(Role::Arbiter);
    let r = w.run(
        "SAMR",
        "emer-arbiter",
        Command::RegisterDepartment {
            department: tax,
            expected_revision: None,
        },
    );
    assert!(r.result.is_ok(), "{r:?}");
    assert_eq!(push_audience(&mut w), vec!["EMER", "JUST", "SAMR", "TRANS"]);
    // JUST no longer arbitrates: no longer told.
    let mut just = default_departments()
        .into_iter()
        .find(|d| d.code == "JUST")
        .unwrap();
    just.roles.retain(|r| *r != Role::Arbiter);
    let r = w.run(
        "SAMR",
        "just-not-arbiter",
        Command::RegisterDepartment {
            department: just,
            expected_revision: None,
        },
    );
    assert!(r.result.is_ok(), "{r:?}");
    let with_key = push_audience(&mut w);
    assert_eq!(with_key, vec!["EMER", "SAMR", "TRANS"]);
    // A state written before the derived key existed (a cluster upgraded in
    // place) reads the registry instead, and tells the same departments.
    assert!(w
        .state
        .map
        .remove(concord_domain::state::keys::ARBITERS)
        .is_some());
    assert_eq!(push_audience(&mut w), with_key);
}
