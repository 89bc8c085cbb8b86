//! Re-checks a register history dumped by the campaign (one JSON object per line)
//! and narrows a violation down: the shortest prefix (by call time) that is not
//! linearizable, and the operations around its end.
//! `cargo run -p concord-tests --example check_history -- FILE INITIAL`

use concord_tests::lin::{linearizable, Operation, RegisterOp};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let text = std::fs::read_to_string(&args[0])?;
    let initial = args.get(1).cloned().unwrap_or_default();
    let mut rows: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    rows.retain(|r| r["status"] == "Ok" && (r["kind"] == "Write" || r["kind"] == "Read"));
    rows.sort_by_key(|r| r["call"].as_u64().unwrap_or(0));
    let op = |r: &serde_json::Value| Operation {
        op: if r["kind"] == "Write" {
            RegisterOp::Write(r["value"].as_str().unwrap_or_default().to_string())
        } else {
            RegisterOp::Read(r["value"].as_str().unwrap_or_default().to_string())
        },
        call: r["call"].as_u64().unwrap_or(0),
        ret: r["ret"].as_u64(),
    };
    let ops: Vec<Operation> = rows.iter().map(op).collect();
    println!(
        "{} operations; linearizable: {}",
        ops.len(),
        linearizable(&initial, &ops)
    );
    // The history as it stood at time `t`: operations called before it; a read
    // counts once it returned, a write still running is pending (no return).
    let at = |k: usize| -> Vec<Operation> {
        let t = ops.get(k).map_or(u64::MAX, |o| o.call);
        ops[..k]
            .iter()
            .filter_map(|o| match (&o.op, o.ret) {
                (RegisterOp::Read(_), Some(r)) if r >= t => None,
                (RegisterOp::Write(_), Some(r)) if r >= t => Some(Operation {
                    ret: None,
                    ..o.clone()
                }),
                _ => Some(o.clone()),
            })
            .collect()
    };
    // Binary search for the earliest time the history stops being linearizable.
    let (mut lo, mut hi) = (0, ops.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if linearizable(&initial, &at(mid)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    println!("shortest failing prefix: {lo} operations");
    let from = lo.saturating_sub(25);
    for r in &rows[from..lo.min(rows.len())] {
        println!(
            "{:>14} {:>14} {:6} {:6} {:12} rev {:>6} {}",
            r["call"],
            r["ret"],
            r["client"].as_str().unwrap_or(""),
            r["kind"].as_str().unwrap_or(""),
            r["value"].as_str().unwrap_or(""),
            r["revision"],
            r["request_id"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
