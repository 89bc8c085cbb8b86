//! Joint inspections through `apply`: the draw (identical on replicas, verifiable,
//! tamper-evident, tier ratios honoured), the joint task life cycle, and the
//! over-inspection alert at its threshold.

mod common;
use common::*;

use concord_domain::inspection::{self, Candidate, DrawInput, OverInspectionRule};
use concord_domain::{query, Command, DomainError, MemState, Outcome};

fn drawn(w: &mut World, plan: &str) -> (concord_domain::inspection::Draw, Vec<String>) {
    match w
        .run(
            "SAMR",
            "draw",
            Command::DrawPlan {
                plan_id: plan.into(),
            },
        )
        .result
    {
        Ok(Outcome::Drawn { draw, tasks, .. }) => {
            (*draw, tasks.into_iter().map(|t| t.id).collect())
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_draw_is_verifiable_and_a_tampered_draw_fails() {
    let mut w = World::new();
    let plan = planned(&mut w);
    let (draw, tasks) = drawn(&mut w, &plan);
    assert_eq!(
        draw.entities.len(),
        1,
        "60 % of one tier-C entity rounds to 1"
    );
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        query::verify_draw(&w.state, &plan).unwrap(),
        Vec::<String>::new()
    );
    // Drawing again is refused: a plan is drawn once.
    let e = w.err(
        "SAMR",
        Command::DrawPlan {
            plan_id: plan.clone(),
        },
    );
    assert!(matches!(e, DomainError::FailedPrecondition { .. }), "{e:?}");
    // Tamper with the stored seed, then with the population.
    let key = format!("draw/{plan}");
    let original = w.state.map.get(&key).unwrap().clone();
    let mut d: serde_json::Value = serde_json::from_slice(&original).unwrap();
    d["seed"] = serde_json::Value::String("00".repeat(32));
    w.state
        .map
        .insert(key.clone(), serde_json::to_vec(&d).unwrap());
    let problems = query::verify_draw(&w.state, &plan).unwrap();
    assert!(problems.iter().any(|p| p.contains("seed")), "{problems:?}");
    let mut d: serde_json::Value = serde_json::from_slice(&original).unwrap();
    d["population"][0]["tier"] = serde_json::Value::String("A".into());
    w.state
        .map
        .insert(key.clone(), serde_json::to_vec(&d).unwrap());
    let problems = query::verify_draw(&w.state, &plan).unwrap();
    assert!(
        problems.iter().any(|p| p.contains("population")),
        "{problems:?}"
    );
    // Even a consistent rewrite (new population, hash and digest) is caught by the
    // audit chain, which carries the original digest.
    let mut forged: inspection::Draw = serde_json::from_slice(&original).unwrap();
    forged.population.clear();
    forged.population_hash = inspection::population_hash(&forged.population);
    forged.tiers.iter_mut().for_each(|t| {
        t.population = 0;
        t.drawn = 0
    });
    forged.entities.clear();
    forged.assignments.clear();
    forged.digest = forged.compute_digest();
    w.state
        .map
        .insert(key, serde_json::to_vec(&forged).unwrap());
    let problems = query::verify_draw(&w.state, &plan).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("audit"), "{problems:?}");
}

#[test]
fn replicas_draw_the_same_entities_and_inspectors() {
    let mut w = World::new();
    let plan = planned(&mut w);
    // Replay the same log on a second state: the world's log is its state's history,
    // so compare against a world built by the same steps.
    let mut other = World::new();
    let plan2 = planned(&mut other);
    assert_eq!(plan, plan2);
    let (a, _) = drawn(&mut w, &plan);
    let (b, _) = drawn(&mut other, &plan2);
    assert_eq!(a, b);
    assert_eq!(w.state, other.state);
}

#[test]
fn tier_ratios_are_honoured_over_a_large_population() {
    // 20,000 candidates over four tiers; the midpoints of the default ranges.
    let tiers = [("A", 250u32), ("B", 1250), ("C", 4050), ("D", 8050)];
    let population: Vec<Candidate> = (0..20_000)
        .map(|i| Candidate {
            uscc: format!("E{i:06}"),
            tier: tiers[i % 4].0.to_string(),
        })
        .collect();
    let ratios: Vec<(String, u32)> = tiers.iter().map(|(t, r)| (t.to_string(), *r)).collect();
    let mut w = World::new();
    let plan_id = planned(&mut w);
    let plan = query::plan(&w.state, &plan_id).unwrap();
    let rosters = vec![("SAMR".to_string(), vec!["i1".to_string()])];
    // Bound 1 (exact): per tier, |drawn - n × ratio| <= 0.5.
    let (samples, entities, _) = inspection::draw(&DrawInput {
        plan: &plan,
        seed: "seed-0",
        population: &population,
        ratios: &ratios,
        rosters: &rosters,
    });
    for s in &samples {
        let expected = s.population as f64 * s.ratio_bp as f64 / 10_000.0;
        assert!((s.drawn as f64 - expected).abs() <= 0.5, "{s:?}");
    }
    assert_eq!(
        entities.len() as u32,
        samples.iter().map(|s| s.drawn).sum::<u32>()
    );
    // Bound 2 (statistical): over 200 seeds, the first 200 tier-B candidates are each
    // drawn with probability 12.5 %; their total count (40,000 trials) lies within
    // 5 standard deviations of 5,000 (σ = √(40000 × 0.125 × 0.875) ≈ 66.1).
    let watched: Vec<&str> = population
        .iter()
        .filter(|c| c.tier == "B")
        .take(200)
        .map(|c| c.uscc.as_str())
        .collect();
    let mut hits = 0u32;
    for s in 0..200 {
        let (_, entities, _) = inspection::draw(&DrawInput {
            plan: &plan,
            seed: &format!("seed-{s}"),
            population: &population,
            ratios: &ratios,
            rosters: &rosters,
        });
        hits += watched
            .iter()
            .filter(|u| entities.binary_search(&u.to_string()).is_ok())
            .count() as u32;
    }
    assert!((hits as f64 - 5_000.0).abs() < 5.0 * 66.1, "{hits} hits");
    eprintln!("tier B inclusion: {hits} of 40000 trials (expected 5000)");
}

#[test]
fn a_joint_task_takes_each_department_s_result_once() {
    let mut w = World::new();
    let plan = planned(&mut w);
    let (_, tasks) = drawn(&mut w, &plan);
    let task = tasks[0].clone();
    // A department without a part in the task.
    let e = w.err(
        "EMER",
        Command::SubmitResult {
            task_id: task.clone(),
            result: result_spec(),
        },
    );
    assert!(matches!(e, DomainError::PermissionDenied { .. }), "{e:?}");
    // An inspector who was not drawn.
    let mut wrong = result_spec();
    wrong.inspectors = vec!["i7".into()];
    let e = w.err(
        "SAMR",
        Command::SubmitResult {
            task_id: task.clone(),
            result: wrong,
        },
    );
    assert!(matches!(e, DomainError::InvalidArgument { .. }), "{e:?}");
    let submit = |w: &mut World, d: &str, rid: &str| {
        w.run(
            d,
            rid,
            Command::SubmitResult {
                task_id: task.clone(),
                result: result_spec(),
            },
        )
    };
    let r = submit(&mut w, "SAMR", "s-1");
    assert!(matches!(&r.result, Ok(Outcome::Submitted { .. })), "{r:?}");
    // The same result again, under the same or a new request id: no change.
    let before = w.state.clone();
    let again = submit(&mut w, "SAMR", "s-1");
    assert!(again.replayed);
    let r = submit(&mut w, "SAMR", "s-2");
    assert!(r.result.is_ok(), "{r:?}");
    let keep = |s: &MemState| {
        let mut s = s.clone();
        s.map.retain(|k, _| {
            !k.starts_with("dedup") && !k.starts_with("audit/") && k != "meta/audit_head"
        });
        s
    };
    assert_eq!(
        keep(&before),
        keep(&w.state),
        "a repeated result changed state"
    );
    // A different result from the same department is refused.
    let mut other = result_spec();
    other.findings = "另有发现".into();
    let e = w.err(
        "SAMR",
        Command::SubmitResult {
            task_id: task.clone(),
            result: other,
        },
    );
    assert!(matches!(e, DomainError::FailedPrecondition { .. }), "{e:?}");
    // TRANS completes the task; nothing more is accepted.
    let r = submit(&mut w, "TRANS", "t-1");
    match &r.result {
        Ok(Outcome::Submitted { task, .. }) => {
            assert_eq!(
                task.status,
                concord_domain::inspection::TaskStatus::Completed
            )
        }
        other => panic!("{other:?}"),
    }
    let mut late = result_spec();
    late.findings = "补充".into();
    let e = w.err(
        "TRANS",
        Command::SubmitResult {
            task_id: task,
            result: late,
        },
    );
    assert!(matches!(e, DomainError::FailedPrecondition { .. }), "{e:?}");
    // Mutual recognition: the results are visible to a department planning its own.
    let uscc = ENTITIES[0].0;
    let scope = concord_domain::sharing::Scope::load(&w.state, "EMER").unwrap();
    let seen = query::recent_results(&w.state, &scope, uscc, 0).unwrap();
    assert_eq!(seen.len(), 2, "public results are for everyone");
}

#[test]
fn the_over_inspection_alert_fires_exactly_at_the_threshold_into_each_inbox() {
    let mut w = World::new();
    let uscc = register(&mut w, 1);
    let r = w.run(
        "BIGDATA",
        "rule",
        Command::SetOverInspectionRule {
            rule: OverInspectionRule {
                min_inspections: 3,
                min_departments: 2,
                window_days: 30,
            },
        },
    );
    assert!(r.result.is_ok(), "{r:?}");
    let inspect = |w: &mut World, d: &str, n: u32| match w
        .run(
            d,
            &format!("adhoc-{n}"),
            Command::RecordInspection {
                uscc: uscc.clone(),
                note: "日常检查".into(),
            },
        )
        .result
    {
        Ok(Outcome::Inspected { alert, .. }) => alert,
        other => panic!("{other:?}"),
    };
    // Two inspections: below the threshold.
    assert!(inspect(&mut w, "SAMR", 1).is_none());
    assert!(inspect(&mut w, "SAMR", 2).is_none());
    // The third, by a second department, meets both conditions: one alert.
    let alert = inspect(&mut w, "HEALTH", 3).expect("alert at the threshold");
    assert_eq!(alert.inspections, 3);
    assert_eq!(
        alert.departments,
        vec!["HEALTH".to_string(), "SAMR".to_string()]
    );
    // More inspections inside the window raise no new alert.
    assert!(inspect(&mut w, "EMER", 4).is_none());
    for d in ["SAMR", "HEALTH"] {
        let inbox = query::inbox(&w.state, d).unwrap();
        assert_eq!(inbox.len(), 1, "{d}");
        assert_eq!(inbox[0].id, alert.id);
    }
    assert!(query::inbox(&w.state, "EMER").unwrap().is_empty());
    // Outside the window the count starts again.
    w.now += 31 * 86_400_000;
    assert!(inspect(&mut w, "SAMR", 6).is_none());
}

#[test]
fn a_lead_draws_once_per_items_and_period_and_needs_enough_inspectors() {
    let mut w = World::new();
    let first = planned(&mut w);
    let item = query::plan(&w.state, &first).unwrap().spec.items[0].clone();
    drawn(&mut w, &first);
    // A second plan over the same item and period: created, but never drawn.
    let second = match w
        .run(
            "SAMR",
            "plan-2",
            Command::CreatePlan {
                plan: plan_spec(&item),
            },
        )
        .result
    {
        Ok(Outcome::Plan(p)) => p.id,
        other => panic!("{other:?}"),
    };
    let e = w.err("SAMR", Command::DrawPlan { plan_id: second });
    assert!(
        matches!(&e, DomainError::FailedPrecondition { reason } if reason.contains(&first)),
        "{e:?}"
    );
    // A plan that needs two inspectors per department, with one on each roster.
    let mut spec = plan_spec(&item);
    spec.period_start_ms = 1_800_000_000_000;
    spec.period_end_ms = 1_900_000_000_000;
    spec.inspectors_per_department = 2;
    let third = match w
        .run("SAMR", "plan-3", Command::CreatePlan { plan: spec })
        .result
    {
        Ok(Outcome::Plan(p)) => p.id,
        other => panic!("{other:?}"),
    };
    let e = w.err("SAMR", Command::DrawPlan { plan_id: third });
    assert!(
        matches!(&e, DomainError::FailedPrecondition { reason } if reason.contains("eligible inspector")),
        "{e:?}"
    );
    // Conflicts name only the plan's departments; unknown districts are refused.
    let mut spec = plan_spec(&item);
    spec.conflicts.push(concord_domain::inspection::Conflict {
        department: "EMER".into(),
        inspector: "i1".into(),
        uscc: ENTITIES[0].0.into(),
    });
    let e = w.err("SAMR", Command::CreatePlan { plan: spec });
    assert!(matches!(e, DomainError::InvalidArgument { .. }), "{e:?}");
    let mut spec = plan_spec(&item);
    spec.districts = vec!["太原".into()];
    let e = w.err("SAMR", Command::CreatePlan { plan: spec });
    assert!(
        matches!(&e, DomainError::InvalidArgument { field, .. } if field == "plan.districts[0]"),
        "{e:?}"
    );
}
