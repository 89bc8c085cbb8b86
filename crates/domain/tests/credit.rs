//! Entities and credit through `apply`: USCC validation (table and property), tier
//! evaluation and its determinism across replicas, re-tiering on a policy change and
//! on expiry through the Tick, and who may change what.

mod common;
use common::*;

use concord_domain::credit::{CreditKind, Severity, TierPolicySpec};
use concord_domain::{apply, query, tick_due, uscc, Command, DomainError, Envelope, MemState};
use concord_domain::{Outcome, Principal};
use proptest::prelude::*;

const DAY: i64 = 86_400_000;

#[test]
fn every_sample_entity_has_a_valid_code_and_bad_codes_name_their_rule() {
    for (code, _, _) in ENTITIES {
        uscc::validate("uscc", code).unwrap();
    }
    uscc::validate("uscc", "91310110666007217T").unwrap();
    let mut w = World::new();
    let mut bad = entity_spec(0);
    bad.uscc = "9114030254PNMK4N6C".into();
    let e = w.err(
        "SAMR",
        Command::RegisterEntity {
            entity: bad,
            expected_revision: None,
        },
    );
    assert!(
        matches!(&e, DomainError::InvalidArgument { field, reason } if field == "entity.uscc" && reason.contains("check character")),
        "{e:?}"
    );
    let mut bad = entity_spec(0);
    bad.district = "太原".into();
    let e = w.err(
        "SAMR",
        Command::RegisterEntity {
            entity: bad,
            expected_revision: None,
        },
    );
    assert!(
        matches!(&e, DomainError::InvalidArgument { field, .. } if field == "entity.district"),
        "{e:?}"
    );
}

/// A valid code: two characters, a six-digit area code, nine characters, the check.
fn valid_code() -> impl Strategy<Value = String> {
    let alphabet: Vec<char> = uscc::ALPHABET.chars().collect();
    let any = proptest::sample::select(alphabet);
    let digit = proptest::sample::select(('0'..='9').collect::<Vec<char>>());
    (
        proptest::collection::vec(any.clone(), 2),
        proptest::collection::vec(digit, 6),
        proptest::collection::vec(any, 9),
    )
        .prop_map(|(a, b, c)| {
            let first: String = a.into_iter().chain(b).chain(c).collect();
            let check = uscc::check_character(&first).unwrap();
            format!("{first}{check}")
        })
}

proptest! {
    #[test]
    fn any_valid_code_with_one_character_changed_is_rejected(
        code in valid_code(),
        position in 0usize..18,
        replacement in proptest::sample::select(
            "0123456789ABCDEFGHJKLMNPQRTUWXYIOSVZabc-".chars().collect::<Vec<char>>()
        ),
    ) {
        prop_assert!(uscc::validate("uscc", &code).is_ok());
        let mut chars: Vec<char> = code.chars().collect();
        prop_assume!(chars[position] != replacement);
        chars[position] = replacement;
        let changed: String = chars.into_iter().collect();
        prop_assert!(uscc::validate("uscc", &changed).is_err(), "{} accepted", changed);
    }
}

fn tier_of(w: &World, uscc: &str) -> (String, i64) {
    let (t, _) = query::tier(&w.state, uscc).unwrap();
    (t.tier, t.score)
}

fn record(w: &mut World, actor: &str, spec: concord_domain::credit::CreditRecordSpec) -> String {
    let rid = format!("r{}", w.revision + 1);
    match w
        .run(actor, &rid, Command::RecordCredit { record: spec })
        .result
    {
        Ok(Outcome::Credit { record, .. }) => record.id,
        other => panic!("{other:?}"),
    }
}

#[test]
fn tiers_follow_records_policy_and_expiry() {
    let mut w = World::new();
    let a = register(&mut w, 0);
    // No records: the base score (80) is tier B, sampled 5-20 %, once a year.
    let (t, _) = query::tier(&w.state, &a).unwrap();
    assert_eq!(
        (
            t.tier.as_str(),
            t.score,
            t.sampling_min_pct,
            t.sampling_max_pct
        ),
        ("B", 80, 5, 20)
    );
    // A serious violation for 30 days: 80 - 20 = 60, tier C.
    let spec = credit(&w, &a, CreditKind::Violation, Severity::Serious, Some(30));
    let violation = record(&mut w, "EMER", spec);
    assert_eq!(tier_of(&w, &a), ("C".into(), 60));
    // A commendation (grave = +20): back to B at 80; not yet A.
    let spec = credit(&w, &a, CreditKind::Commendation, Severity::Grave, None);
    record(&mut w, "HEALTH", spec);
    assert_eq!(tier_of(&w, &a), ("B".into(), 80));

    // The credit authority publishes policy v2 with a higher base: every entity is
    // re-tiered in the same revision.
    let mut policy = TierPolicySpec::default_policy();
    policy.base_score = 90;
    let r = w.run(
        "NDRC",
        "policy-2",
        Command::PutTierPolicy {
            policy,
            expected_version: Some(1),
        },
    );
    assert!(
        matches!(r.result, Ok(Outcome::TierPolicy { retiered: 1, .. })),
        "{r:?}"
    );
    assert_eq!(tier_of(&w, &a), ("A".into(), 90));
    // Expiry: 31 days later the violation lapses; the leader's tick re-tiers.
    w.now += 31 * DAY;
    assert!(tick_due(&w.state, w.now, i64::MAX / 4).unwrap());
    let r = w.run(
        "SAMR",
        "",
        Command::Tick {
            dedup_retention_ms: i64::MAX / 4,
        },
    );
    assert!(
        matches!(r.result, Ok(Outcome::Ticked { retiered: 1, .. })),
        "{r:?}"
    );
    assert_eq!(tier_of(&w, &a), ("A".into(), 110));
    assert!(!tick_due(&w.state, w.now, i64::MAX / 4).unwrap());
    // The history says why each change happened.
    let (_, history) = query::tier(&w.state, &a).unwrap();
    let steps: Vec<(String, String, bool)> = history
        .iter()
        .map(|c| (c.from.clone(), c.to.clone(), !c.cause.is_empty()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("".into(), "B".into(), true),
            ("B".into(), "C".into(), true),
            ("C".into(), "B".into(), true),
            ("B".into(), "A".into(), true),
        ]
    );
    assert!(history[1].cause.contains(&violation), "{:?}", history[1]);
    assert!(history[3].cause.contains("policy v2"), "{:?}", history[3]);
    // The A tier already reached stays when the violation lapses (score moves only).
    let (t, _) = query::tier(&w.state, &a).unwrap();
    assert!(t.records_in_force.len() == 1 && !t.best_tier_blocked);
}

#[test]
fn a_dishonesty_listing_keeps_an_entity_out_of_the_best_tier() {
    let mut w = World::new();
    let a = register(&mut w, 1);
    let spec = credit(&w, &a, CreditKind::Commendation, Severity::Grave, None);
    record(&mut w, "SAMR", spec);
    let spec = credit(&w, &a, CreditKind::Commendation, Severity::Serious, None);
    record(&mut w, "SAMR", spec);
    assert_eq!(tier_of(&w, &a), ("A".into(), 115));
    // Even a listing that costs few points lifts the A-tier reduction.
    let mut policy = TierPolicySpec::default_policy();
    for r in &mut policy.rules {
        if r.kind == CreditKind::DishonestyListing {
            r.delta = -1;
        }
    }
    let r = w.run(
        "NDRC",
        "p2",
        Command::PutTierPolicy {
            policy,
            expected_version: None,
        },
    );
    assert!(r.result.is_ok(), "{r:?}");
    let spec = credit(&w, &a, CreditKind::DishonestyListing, Severity::Minor, None);
    record(&mut w, "NDRC", spec);
    let (t, _) = query::tier(&w.state, &a).unwrap();
    assert_eq!(
        (t.tier.as_str(), t.score, t.best_tier_blocked),
        ("B", 114, true)
    );
}

#[test]
fn a_joint_punishment_listing_keeps_an_entity_out_of_the_best_tier_while_in_force() {
    use concord_domain::entity::{ListKind, ListingSpec};
    let mut w = World::new();
    let a = register(&mut w, 2);
    let spec = credit(&w, &a, CreditKind::Commendation, Severity::Grave, None);
    record(&mut w, "SAMR", spec);
    assert_eq!(tier_of(&w, &a), ("A".into(), 100));
    let r = w.run(
        "NDRC",
        "list-1",
        Command::PutOnList {
            listing: ListingSpec {
                list: ListKind::Punishment,
                uscc: a.clone(),
                reason: "拒不履行行政处罚决定".into(),
                legal_basis: "《失信联合惩戒备忘录》".into(),
                until_ms: Some(w.now + 10 * DAY),
            },
        },
    );
    assert!(r.result.is_ok(), "{r:?}");
    assert_eq!(tier_of(&w, &a), ("B".into(), 100));
    // The listing ends after ten days: the tick restores the best tier.
    w.now += 11 * DAY;
    assert!(tick_due(&w.state, w.now, i64::MAX / 4).unwrap());
    w.run(
        "SAMR",
        "",
        Command::Tick {
            dedup_retention_ms: i64::MAX / 4,
        },
    );
    assert_eq!(tier_of(&w, &a), ("A".into(), 100));
    let (_, history) = query::tier(&w.state, &a).unwrap();
    let causes: Vec<&str> = history.iter().map(|c| c.cause.as_str()).collect();
    assert!(
        causes.iter().any(|c| c.contains("punishment list")),
        "{causes:?}"
    );
}

#[test]
fn only_the_credit_authority_sets_policy_and_only_the_recorder_corrects() {
    let mut w = World::new();
    let a = register(&mut w, 0);
    let spec = credit(&w, &a, CreditKind::Violation, Severity::Serious, None);
    let id = record(&mut w, "EMER", spec.clone());
    for actor in ["SAMR", "TRANS", "NDRC"] {
        let mut minor = spec.clone();
        minor.severity = Severity::Minor;
        let e = w.err(
            actor,
            Command::CorrectCredit {
                id: id.clone(),
                record: minor,
                reason: "更正".into(),
                expected_revision: None,
            },
        );
        assert!(
            matches!(e, DomainError::PermissionDenied { .. }),
            "{actor}: {e:?}"
        );
    }
    for actor in ["SAMR", "EMER", "JUST"] {
        let e = w.err(
            actor,
            Command::PutTierPolicy {
                policy: TierPolicySpec::default_policy(),
                expected_version: None,
            },
        );
        assert!(
            matches!(e, DomainError::PermissionDenied { .. }),
            "{actor}: {e:?}"
        );
    }
    // The recorder corrects; the first version stays in the history; the tier moves.
    let mut minor = spec.clone();
    minor.severity = Severity::Minor;
    let r = w.run(
        "EMER",
        "fix-1",
        Command::CorrectCredit {
            id: id.clone(),
            record: minor,
            reason: "复核后认定情节轻微".into(),
            expected_revision: None,
        },
    );
    assert!(r.result.is_ok(), "{r:?}");
    let history = query::credit_history(&w.state, &id).unwrap();
    let versions: Vec<_> = history
        .iter()
        .map(|r| (r.version, r.spec.severity))
        .collect();
    assert_eq!(versions, vec![(1, Severity::Serious), (2, Severity::Minor)]);
    assert_eq!(tier_of(&w, &a), ("B".into(), 75));
    // A correction may not move the record to another entity.
    let b = register(&mut w, 1);
    let mut moved = spec;
    moved.uscc = b;
    let e = w.err(
        "EMER",
        Command::CorrectCredit {
            id,
            record: moved,
            reason: "x".into(),
            expected_revision: None,
        },
    );
    assert!(matches!(e, DomainError::InvalidArgument { .. }), "{e:?}");
}

#[test]
fn three_replicas_reach_the_same_tiers_and_history() {
    // Build one log, then apply it on three fresh replicas.
    let mut log: Vec<Envelope> = vec![];
    let push = |w: &mut World, log: &mut Vec<Envelope>, actor: &str, principal, command| {
        w.revision += 1;
        w.now += 1000;
        let env = Envelope {
            actor: actor.to_string(),
            principal,
            request_id: format!("log-{}", w.revision),
            timestamp_ms: w.now,
            command,
        };
        let t = apply(&w.state, &env, w.revision).unwrap();
        w.state.apply_writes(&t.writes);
        log.push(env);
    };
    let seed = Command::Bootstrap {
        departments: concord_domain::department::default_departments(),
    };
    let mut w = World {
        state: MemState::default(),
        revision: 0,
        now: 1_700_000_000_000,
    };
    push(&mut w, &mut log, "SAMR", Principal::Member, seed);
    for i in 0..3 {
        push(
            &mut w,
            &mut log,
            "SAMR",
            Principal::Member,
            Command::RegisterEntity {
                entity: entity_spec(i),
                expected_revision: None,
            },
        );
    }
    for (i, (kind, severity, days)) in [
        (CreditKind::Violation, Severity::Serious, Some(1)),
        (CreditKind::AdministrativePenalty, Severity::Grave, None),
        (CreditKind::Commendation, Severity::General, Some(2)),
    ]
    .into_iter()
    .enumerate()
    {
        let spec = credit(&w, ENTITIES[i].0, kind, severity, days);
        push(
            &mut w,
            &mut log,
            "EMER",
            Principal::Member,
            Command::RecordCredit { record: spec },
        );
    }
    let mut policy = TierPolicySpec::default_policy();
    policy.tiers[1].min_score = 65;
    push(
        &mut w,
        &mut log,
        "NDRC",
        Principal::Member,
        Command::PutTierPolicy {
            policy,
            expected_version: None,
        },
    );
    w.now += 3 * DAY;
    push(
        &mut w,
        &mut log,
        "SAMR",
        Principal::System,
        Command::Tick {
            dedup_retention_ms: 3_600_000,
        },
    );
    let replicas: Vec<MemState> = (0..3)
        .map(|_| {
            let mut state = MemState::default();
            for (i, env) in log.iter().enumerate() {
                let t = apply(&state, env, i as u64 + 1).unwrap();
                state.apply_writes(&t.writes);
            }
            state
        })
        .collect();
    for r in &replicas {
        assert_eq!(r, &w.state, "a replica diverged");
    }
    // After the tick: the violation (1 day) and the commendation (2 days) lapsed;
    // the grave penalty stays (80 - 40 = 40, below C's 50).
    let tiers: Vec<String> = ENTITIES
        .iter()
        .map(|(u, _, _)| query::tier(&replicas[2], u).unwrap().0.tier)
        .collect();
    assert_eq!(tiers, vec!["B", "D", "B"]);
}

#[test]
fn a_listing_that_does_not_move_the_tier_is_still_recorded_as_a_block() {
    use concord_domain::entity::{ListKind, ListingSpec};
    let mut w = World::new();
    let a = register(&mut w, 0);
    assert_eq!(tier_of(&w, &a), ("B".into(), 80));
    let r = w.run(
        "NDRC",
        "list-b",
        Command::PutOnList {
            listing: ListingSpec {
                list: ListKind::Punishment,
                uscc: a.clone(),
                reason: "失信".into(),
                legal_basis: "《备忘录》".into(),
                until_ms: None,
            },
        },
    );
    assert!(r.result.is_ok(), "{r:?}");
    let (t, _) = query::tier(&w.state, &a).unwrap();
    assert_eq!((t.tier.as_str(), t.best_tier_blocked), ("B", true));
}

/// `n` valid codes in Yangquan's city district (area code 140302).
fn codes(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let first = format!("91140302{i:09}");
            let check = uscc::check_character(&first).unwrap();
            format!("{first}{check}")
        })
        .collect()
}

#[test]
fn a_new_policy_re_tiers_a_large_directory_in_batches_through_ticks() {
    let mut w = World::new();
    let all = codes(concord_domain::RETIER_BATCH + 3);
    for (i, code) in all.iter().enumerate() {
        let mut spec = entity_spec(0);
        spec.uscc = code.clone();
        let r = w.run(
            "SAMR",
            &format!("reg-{i}"),
            Command::RegisterEntity {
                entity: spec,
                expected_revision: None,
            },
        );
        assert!(r.result.is_ok(), "{r:?}");
    }
    let mut policy = TierPolicySpec::default_policy();
    policy.base_score = 95;
    let r = w.run(
        "NDRC",
        "p2",
        Command::PutTierPolicy {
            policy,
            expected_version: None,
        },
    );
    let n = concord_domain::RETIER_BATCH as u32;
    assert!(
        matches!(r.result, Ok(Outcome::TierPolicy { retiered, .. }) if retiered == n),
        "{r:?}"
    );
    let on_v2 = |w: &World| {
        all.iter()
            .filter(|c| query::tier(&w.state, c).unwrap().0.policy_version == 2)
            .count()
    };
    assert_eq!(on_v2(&w), n as usize);
    assert!(
        tick_due(&w.state, w.now, i64::MAX / 4).unwrap(),
        "the rest is due"
    );
    let r = w.run(
        "SAMR",
        "",
        Command::Tick {
            dedup_retention_ms: i64::MAX / 4,
        },
    );
    assert!(
        matches!(r.result, Ok(Outcome::Ticked { retiered: 3, .. })),
        "{r:?}"
    );
    assert_eq!(on_v2(&w), all.len());
    assert!(!tick_due(&w.state, w.now, i64::MAX / 4).unwrap());
    assert_eq!(tier_of(&w, &all[0]), ("A".into(), 95));
}

#[test]
fn a_state_seeded_before_policies_existed_uses_the_default_policy() {
    let mut w = World::new();
    // Remove what newer bootstraps seed, as an older state would lack it.
    w.state.map.retain(|k, _| {
        k != "meta/tier_policy" && k != "meta/districts" && !k.starts_with("policyv/")
    });
    let a = register(&mut w, 0);
    assert_eq!(tier_of(&w, &a), ("B".into(), 80));
    let r = w.run(
        "NDRC",
        "p2",
        Command::PutTierPolicy {
            policy: TierPolicySpec::default_policy(),
            expected_version: Some(1),
        },
    );
    assert!(r.result.is_ok(), "{r:?}");
}
