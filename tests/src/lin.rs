//! A linearizability checker for histories of a register (Wing & Gong's search with
//! Lowe's memoisation, as in porcupine): is there a total order of the operations,
//! consistent with real time, in which every read returns the latest write?
//!
//! An operation whose outcome is unknown (a write that timed out and was never
//! confirmed) has no return time: it may take effect at any point after its call,
//! or never (it is then placed after everything else, where it changes nothing).

use std::collections::HashSet;

/// What an operation did to the register.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    Write(String),
    /// A read and the value it returned.
    Read(String),
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub op: RegisterOp,
    /// When the client called (any monotonic clock, e.g. ns since the run started).
    pub call: u64,
    /// When the answer came back; `None` when the outcome is unknown.
    pub ret: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    op: usize,
    is_call: bool,
    /// For a call: the index of its return entry.
    matched: usize,
}

/// Whether `history` is linearizable for a register starting at `initial`. Reads
/// with unknown outcomes must be left out by the caller (they constrain nothing).
pub fn linearizable(initial: &str, history: &[Operation]) -> bool {
    if history.is_empty() {
        return true;
    }
    // Events in time order; at equal times calls come first, so operations that
    // touch at an instant count as concurrent (the permissive reading).
    let mut events: Vec<(u64, bool, usize)> = vec![];
    for (i, o) in history.iter().enumerate() {
        events.push((o.call, true, i));
        events.push((o.ret.unwrap_or(u64::MAX), false, i));
    }
    events.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    let n = events.len();
    let mut entries: Vec<Entry> = events
        .iter()
        .map(|&(_, is_call, op)| Entry {
            op,
            is_call,
            matched: usize::MAX,
        })
        .collect();
    let mut ret_of = vec![usize::MAX; history.len()];
    for (idx, e) in entries.iter().enumerate() {
        if !e.is_call {
            ret_of[e.op] = idx;
        }
    }
    for e in entries.iter_mut() {
        if e.is_call {
            e.matched = ret_of[e.op];
        }
    }
    // A doubly linked list over the entries, with a sentinel head at index n.
    let head = n;
    let mut next: Vec<usize> = (1..=n).collect();
    next.push(0);
    let mut prev: Vec<usize> = vec![0; n + 1];
    prev[0] = head;
    for i in 1..n {
        prev[i] = i - 1;
    }
    let end = n; // `next` of the last entry is n: the end marker equals the head index.
    next[n - 1] = end;
    next[head] = 0;
    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = nx;
        if nx != end {
            prev[nx] = p;
        }
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = i;
        if nx != end {
            prev[nx] = i;
        }
    };
    let words = history.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, String)> = HashSet::new();
    let mut state = initial.to_string();
    let mut stack: Vec<(usize, String)> = vec![];
    let mut entry = next[head];
    while next[head] != end {
        let e = entries[entry];
        if e.is_call {
            let op = &history[e.op].op;
            let next_state = match op {
                RegisterOp::Write(v) => Some(v.clone()),
                RegisterOp::Read(v) if *v == state => Some(state.clone()),
                RegisterOp::Read(_) => None,
            };
            if let Some(s) = next_state {
                let mut l = linearized.clone();
                l[e.op / 64] |= 1 << (e.op % 64);
                if cache.insert((l.clone(), s.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, s)));
                    linearized = l;
                    // Lift the call and its return out of the list.
                    lift(&mut next, &mut prev, entry);
                    lift(&mut next, &mut prev, e.matched);
                    entry = next[head];
                    continue;
                }
            }
            entry = next[entry];
        } else {
            // A return whose call is not linearized yet: undo the last choice.
            let Some((undo, s)) = stack.pop() else {
                return false;
            };
            state = s;
            let op = entries[undo].op;
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut next, &mut prev, entries[undo].matched);
            unlift(&mut next, &mut prev, undo);
            entry = next[undo];
        }
        if entry == end {
            // Only reachable when every remaining entry is a call that cannot go
            // next; backtrack as for a return.
            let Some((undo, s)) = stack.pop() else {
                return false;
            };
            state = s;
            let op = entries[undo].op;
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut next, &mut prev, entries[undo].matched);
            unlift(&mut next, &mut prev, undo);
            entry = next[undo];
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: &str, call: u64, ret: Option<u64>) -> Operation {
        Operation {
            op: RegisterOp::Write(v.into()),
            call,
            ret,
        }
    }
    fn r(v: &str, call: u64, ret: u64) -> Operation {
        Operation {
            op: RegisterOp::Read(v.into()),
            call,
            ret: Some(ret),
        }
    }

    #[test]
    fn sequential_histories() {
        assert!(linearizable("0", &[w("1", 0, Some(1)), r("1", 2, 3)]));
        assert!(linearizable(
            "0",
            &[r("0", 0, 1), w("1", 2, Some(3)), r("1", 4, 5)]
        ));
        // A stale read after the write completed.
        assert!(!linearizable("0", &[w("1", 0, Some(1)), r("0", 2, 3)]));
        // A read of a value nobody wrote.
        assert!(!linearizable("0", &[r("7", 0, 1)]));
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // The read overlaps the write: old or new value are both fine.
        assert!(linearizable("0", &[w("1", 0, Some(10)), r("0", 1, 2)]));
        assert!(linearizable("0", &[w("1", 0, Some(10)), r("1", 1, 2)]));
        // But not new then old within the write's window (reads ordered in time).
        assert!(!linearizable(
            "0",
            &[w("1", 0, Some(10)), r("1", 1, 2), r("0", 3, 4)]
        ));
    }

    #[test]
    fn a_write_with_unknown_outcome_may_or_may_not_have_happened() {
        assert!(linearizable("0", &[w("1", 0, None), r("0", 5, 6)]));
        assert!(linearizable("0", &[w("1", 0, None), r("1", 5, 6)]));
        // Once seen it stays: the register does not go back.
        assert!(!linearizable(
            "0",
            &[w("1", 0, None), r("1", 5, 6), r("0", 7, 8)]
        ));
        // It cannot be seen before it was called.
        assert!(!linearizable("0", &[r("1", 0, 1), w("1", 5, None)]));
    }

    #[test]
    fn split_brain_is_caught() {
        // Two writers each acknowledged; readers see them in opposite orders.
        let h = [
            w("a", 0, Some(5)),
            w("b", 0, Some(5)),
            r("a", 6, 7),
            r("b", 8, 9),
            r("a", 10, 11),
        ];
        assert!(!linearizable("0", &h));
    }

    #[test]
    fn long_concurrent_histories_finish() {
        // 300 writes by 3 clients, each followed by a read of its own value, with
        // overlapping windows: linearizable, and checked quickly thanks to the cache.
        let mut h = vec![];
        for i in 0..300u64 {
            let t = i * 10;
            h.push(w(&format!("v{i}"), t, Some(t + 25)));
        }
        for i in 0..300u64 {
            let t = i * 10 + 26;
            // Read after the write completed, before the next-but-two began... the
            // value may already be overwritten by writes overlapping the read.
            h.push(r(&format!("v{i}"), t - 1, t));
        }
        assert!(linearizable("init", &h));
    }
}

#[cfg(test)]
mod cross_check {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Exhaustive search: some order of all operations (unknown-outcome writes may
    /// also be left out) that respects real time and register semantics.
    fn brute_force(initial: &str, h: &[Operation]) -> bool {
        fn go(initial: &str, h: &[Operation], done: &mut Vec<bool>, state: String) -> bool {
            if done.iter().all(|d| *d) {
                return true;
            }
            // Candidates: not done, and no undone op returned before it was called.
            for i in 0..h.len() {
                if done[i] {
                    continue;
                }
                let blocked = h
                    .iter()
                    .enumerate()
                    .any(|(j, o)| !done[j] && j != i && o.ret.is_some_and(|r| r < h[i].call));
                if blocked {
                    continue;
                }
                let next = match &h[i].op {
                    RegisterOp::Write(v) => Some(v.clone()),
                    RegisterOp::Read(v) if *v == state => Some(state.clone()),
                    RegisterOp::Read(_) => None,
                };
                if let Some(s) = next {
                    done[i] = true;
                    if go(initial, h, done, s) {
                        return true;
                    }
                    done[i] = false;
                }
                // A write in doubt may never have happened.
                if h[i].ret.is_none() && matches!(h[i].op, RegisterOp::Write(_)) {
                    done[i] = true;
                    if go(initial, h, done, state.clone()) {
                        return true;
                    }
                    done[i] = false;
                }
            }
            false
        }
        go(initial, h, &mut vec![false; h.len()], initial.to_string())
    }

    #[test]
    fn the_search_agrees_with_exhaustive_search_on_random_histories() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut yes, mut no) = (0, 0);
        for _ in 0..3000 {
            let n = rng.gen_range(1..7);
            let mut h = vec![];
            for i in 0..n {
                let call = rng.gen_range(0..20u64);
                let ret = if rng.gen_bool(0.15) {
                    None
                } else {
                    Some(call + rng.gen_range(0..8))
                };
                let op = if rng.gen_bool(0.5) {
                    RegisterOp::Write(format!("v{i}"))
                } else {
                    RegisterOp::Read(format!("v{}", rng.gen_range(0..n + 1)))
                };
                // Reads always have an outcome here (unknown reads are dropped).
                let ret = if matches!(op, RegisterOp::Read(_)) {
                    Some(ret.unwrap_or(call + 1))
                } else {
                    ret
                };
                h.push(Operation { op, call, ret });
            }
            let expect = brute_force(&format!("v{n}"), &h);
            assert_eq!(linearizable(&format!("v{n}"), &h), expect, "{h:?}");
            if expect {
                yes += 1
            } else {
                no += 1
            }
        }
        assert!(yes > 300 && no > 300, "{yes} linearizable, {no} not");
    }
}
