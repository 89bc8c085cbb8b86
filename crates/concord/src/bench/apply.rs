//! `concord bench --apply WRITES`: what applying a pushed case costs one node, without
//! the network, the raft log or the other nodes — the part of a write that every
//! node of a cluster repeats. The same `PushCase` the load runs send, applied through
//! the node's state machine (the domain and fjall, in batches as a loaded leader
//! applies them), then through the domain alone against an in-memory state. The
//! figures are this thread's CPU time, so other processes on the machine and waits
//! for the disk do not count.

use std::time::Duration;

use concord_domain::department::default_departments;
use concord_domain::{apply, Command, Envelope, MemState, Principal, StateRead};
use concord_store::{StoreOptions, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

use super::{case_request, BenchArgs};

/// Three departments pushing to each other, as on `--local`.
const DEPARTMENTS: [&str; 3] = ["SAMR", "TRANS", "JUST"];
const T0_MS: i64 = 1_700_000_000_000;

pub async fn run(args: &BenchArgs, writes: u64) -> anyhow::Result<()> {
    args.fresh_dir()?;
    let batch = args.batch.max(1);
    let envelopes = (0..=writes)
        .map(|i| envelope(args, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Log index = position + 1, as a revision is the log index of its entry.
    let entries: Vec<Entry<TypeConfig>> = envelopes
        .iter()
        .zip(1..)
        .map(|(env, index)| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(env.clone()),
        })
        .collect();

    let (_log, mut sm, _reader) = concord_store::open(&args.dir, StoreOptions::default())?;
    sm.apply(entries[..1].to_vec()).await?;
    let started = (thread_cpu(), process_cpu());
    let mut refused = 0;
    for chunk in entries[1..].chunks(batch) {
        for r in sm.apply(chunk.to_vec()).await? {
            refused += u64::from(r.result.is_err());
        }
    }
    let (store, store_all) = (thread_cpu() - started.0, process_cpu() - started.1);
    anyhow::ensure!(refused == 0, "{refused} of {writes} pushes were refused");
    let disk = concord_node::metrics::dir_size(&args.dir.join("fjall"));

    let mut state = MemState::default();
    let started = thread_cpu();
    for (i, env) in envelopes.iter().enumerate() {
        let t = apply(&state as &dyn StateRead, env, i as u64 + 1)?;
        anyhow::ensure!(t.response.result.is_ok(), "refused: {:?}", t.response);
        state.apply_writes(&t.writes);
    }
    let domain = thread_cpu() - started;

    let per = |d: Duration| d.as_secs_f64() * 1e6 / writes as f64;
    println!(
        "Apply PushCase    writes {writes} batch {batch}  state machine {:6.1} us/write (with fjall's own threads {:6.1})  domain alone {:6.1} us/write  fjall dir {:.1} MB  (CPU time, one node)",
        per(store),
        per(store_all),
        per(domain),
        disk as f64 / 1e6,
    );
    Ok(())
}

/// Entry 0 seeds the departments; the others push a case from one department to
/// the next, as a department's system would through `CaseService/PushCase`.
fn envelope(args: &BenchArgs, i: u64) -> anyhow::Result<Envelope> {
    if i == 0 {
        return Ok(Envelope {
            actor: "SAMR".into(),
            principal: Principal::Member,
            request_id: "seed".into(),
            timestamp_ms: T0_MS,
            command: Command::Bootstrap {
                departments: default_departments(),
            },
        });
    }
    let from = DEPARTMENTS[i as usize % 3];
    let to = DEPARTMENTS[(i as usize + 1) % 3];
    let req = case_request(to, format!("bench-apply-{i}"), args.size);
    // The node's own conversion, so the command is the one a PushCase call proposes.
    let spec = concord_node::convert::case_spec("case", req.case.as_ref())
        .map_err(|e| anyhow::anyhow!("the bench's case: {e:?}"))?;
    Ok(Envelope {
        actor: from.into(),
        principal: Principal::Member,
        request_id: req.request_id,
        timestamp_ms: T0_MS + i as i64,
        command: Command::PushCase { case: spec },
    })
}

/// CPU time this thread has used: the applies run on it (fjall writes its journal
/// and memtable in the caller's thread).
fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of the whole process: also fjall's flushes and compactions.
fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
