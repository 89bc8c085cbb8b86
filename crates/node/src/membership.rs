//! Membership reconciliation: the leader moves the cluster's membership toward the
//! size its configuration asks for, so a StatefulSet that is scaled or given more
//! voters needs no operator at a terminal.
//!
//! What to change is decided by [`plan`], a pure function of the membership and the
//! leader's replication progress, so every rule is tested alone. [`run`] only
//! carries out one change at a time on the leader; a change openraft refuses (one
//! already in progress, a leadership change) is simply planned again next round.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use concord_store::{NodeId, NodeInfo};
use openraft::ChangeMembers;

use crate::config::MembershipTarget;
use crate::core::NodeCore;

/// One membership change, the first the leader should make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Pods of a scaled-down StatefulSet that are still learners: removed.
    RemoveLearners(BTreeSet<NodeId>),
    /// Pods of a scaled-down StatefulSet that are still voters: removed from the
    /// voters and from the cluster in one joint change.
    RemoveVoters(BTreeSet<NodeId>),
    /// Caught-up learners made voters, lowest node id first.
    Promote(BTreeSet<NodeId>),
    /// Voters above the target made learners, highest node id first, never the leader.
    Demote(BTreeSet<NodeId>),
}

/// The membership as the leader sees it.
pub struct View<'a> {
    pub leader: NodeId,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Address of every member.
    pub addrs: BTreeMap<NodeId, &'a str>,
    /// The leader's last log index.
    pub last_log_index: u64,
    /// Highest log index known replicated to each other member.
    pub matched: BTreeMap<NodeId, u64>,
}

/// Whether `id` is a pod of the StatefulSet the target describes: its address is
/// the peer template with its index. Members that are not (a department's node run
/// elsewhere and joined by hand) are never removed, promoted or demoted here.
fn managed(target: &MembershipTarget, id: NodeId, addr: Option<&str>) -> bool {
    match &target.peer_template {
        None => true,
        Some(template) => {
            addr == Some(&template.replace("{index}", &id.saturating_sub(1).to_string()))
        }
    }
}

/// Whether node `id` at `addr` is one the target removes (a pod beyond a
/// scaled-down StatefulSet): such a node is not let back in by JoinService.
pub fn removed(target: &MembershipTarget, id: NodeId, addr: Option<&str>) -> bool {
    target.max_node_id.is_some_and(|max| id > max) && managed(target, id, addr)
}

pub fn plan(target: &MembershipTarget, view: &View<'_>) -> Option<Change> {
    let owned = |id: NodeId| managed(target, id, view.addrs.get(&id).copied());
    let beyond = |id: &NodeId| removed(target, *id, view.addrs.get(id).copied());
    let gone: BTreeSet<NodeId> = view.learners.iter().copied().filter(beyond).collect();
    if !gone.is_empty() {
        return Some(Change::RemoveLearners(gone));
    }
    let gone: BTreeSet<NodeId> = view.voters.iter().copied().filter(beyond).collect();
    // Never remove the last voters: a cluster without one cannot even undo it.
    if !gone.is_empty() && gone.len() < view.voters.len() {
        return Some(Change::RemoveVoters(gone));
    }
    let want = target.voters?;
    if view.voters.len() < want {
        let floor = view.last_log_index.saturating_sub(target.catch_up_entries);
        // A learner that is far behind would, as a voter, hold back every commit
        // until it caught up: only those the leader has nearly replicated to.
        let ready: BTreeSet<NodeId> = view
            .learners
            .iter()
            .copied()
            .filter(|id| !beyond(id) && owned(*id))
            .filter(|id| view.matched.get(id).is_some_and(|m| *m >= floor))
            .take(want - view.voters.len())
            .collect();
        return (!ready.is_empty()).then_some(Change::Promote(ready));
    }
    if view.voters.len() > want {
        let surplus: BTreeSet<NodeId> = view
            .voters
            .iter()
            .rev()
            .copied()
            .filter(|id| *id != view.leader && owned(*id))
            .take(view.voters.len() - want)
            .collect();
        return (!surplus.is_empty()).then_some(Change::Demote(surplus));
    }
    None
}

/// The leader's loop: plan and make one change per round while `target` is set.
pub async fn run(core: Arc<NodeCore>, target: MembershipTarget) {
    if target.voters.is_none() && target.max_node_id.is_none() {
        return;
    }
    let mut stopping = core.stopping.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(target.interval_ms)) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        let change = {
            let m = core.raft.metrics().borrow().clone();
            if m.current_leader != Some(core.id) {
                continue;
            }
            let membership = m.membership_config.membership();
            // A joint configuration is a change still under way.
            if membership.get_joint_config().len() > 1 {
                continue;
            }
            let view = View {
                leader: core.id,
                voters: membership.voter_ids().collect(),
                learners: membership.learner_ids().collect(),
                addrs: membership
                    .nodes()
                    .map(|(id, n)| (*id, n.addr.as_str()))
                    .collect(),
                last_log_index: m.last_log_index.unwrap_or(0),
                matched: m
                    .replication
                    .iter()
                    .flatten()
                    .map(|(id, log)| (*id, log.map_or(0, |l| l.index)))
                    .collect(),
            };
            plan(&target, &view)
        };
        let Some(change) = change else { continue };
        tracing::info!(?change, "membership reconciliation");
        let (members, retain): (ChangeMembers<NodeId, NodeInfo>, bool) = match change.clone() {
            Change::RemoveLearners(ids) => (ChangeMembers::RemoveNodes(ids), false),
            Change::RemoveVoters(ids) => (ChangeMembers::RemoveVoters(ids), false),
            Change::Promote(ids) => (ChangeMembers::AddVoterIds(ids), false),
            Change::Demote(ids) => (ChangeMembers::RemoveVoters(ids), true),
        };
        match core.raft.change_membership(members, retain).await {
            Ok(r) => tracing::info!(?change, index = r.log_id.index, "membership changed"),
            Err(e) => {
                tracing::info!(?change, error = %e, "membership change not made; planning again")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "concord-{index}.concord-peers:7000";

    fn target(voters: Option<usize>, max: Option<u64>) -> MembershipTarget {
        MembershipTarget {
            voters,
            max_node_id: max,
            peer_template: Some(TEMPLATE.into()),
            ..MembershipTarget::default()
        }
    }

    fn addr(id: NodeId) -> String {
        TEMPLATE.replace("{index}", &(id - 1).to_string())
    }

    /// Voters and learners by id, every one at the pod address of its id, all
    /// caught up unless listed in `behind`.
    fn check(
        t: &MembershipTarget,
        leader: NodeId,
        voters: &[NodeId],
        learners: &[NodeId],
        behind: &[NodeId],
        extra: &[(NodeId, &str)],
    ) -> Option<Change> {
        let addrs: BTreeMap<NodeId, String> = voters
            .iter()
            .chain(learners)
            .map(|id| (*id, addr(*id)))
            .chain(extra.iter().map(|(id, a)| (*id, a.to_string())))
            .collect();
        let view = View {
            leader,
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            addrs: addrs.iter().map(|(id, a)| (*id, a.as_str())).collect(),
            last_log_index: 10_000,
            matched: addrs
                .keys()
                .map(|id| (*id, if behind.contains(id) { 10 } else { 9_990 }))
                .collect(),
        };
        plan(t, &view)
    }

    fn ids(v: &[NodeId]) -> BTreeSet<NodeId> {
        v.iter().copied().collect()
    }

    #[test]
    fn learners_are_promoted_lowest_first_up_to_the_target_once_caught_up() {
        let t = target(Some(5), Some(6));
        assert_eq!(
            check(&t, 1, &[1, 2, 3], &[4, 5, 6], &[], &[]),
            Some(Change::Promote(ids(&[4, 5])))
        );
        // Pod 4 is far behind: it would stall commits as a voter; pod 5 and 6 go.
        assert_eq!(
            check(&t, 1, &[1, 2, 3], &[4, 5, 6], &[4], &[]),
            Some(Change::Promote(ids(&[5, 6])))
        );
        assert_eq!(check(&t, 1, &[1, 2, 3], &[4], &[4], &[]), None);
        assert_eq!(check(&t, 1, &[1, 2, 3, 4, 5], &[6], &[], &[]), None);
    }

    #[test]
    fn voters_above_the_target_become_learners_highest_first_never_the_leader() {
        let t = target(Some(3), Some(5));
        assert_eq!(
            check(&t, 1, &[1, 2, 3, 4, 5], &[], &[], &[]),
            Some(Change::Demote(ids(&[4, 5])))
        );
        assert_eq!(
            check(&t, 5, &[1, 2, 3, 4, 5], &[], &[], &[]),
            Some(Change::Demote(ids(&[3, 4])))
        );
    }

    #[test]
    fn pods_of_a_scaled_down_statefulset_leave_learners_first() {
        let t = target(Some(3), Some(3));
        assert_eq!(
            check(&t, 1, &[1, 2, 3, 4], &[5], &[], &[]),
            Some(Change::RemoveLearners(ids(&[5])))
        );
        assert_eq!(
            check(&t, 1, &[1, 2, 3, 4], &[], &[], &[]),
            Some(Change::RemoveVoters(ids(&[4])))
        );
        // Removed pods are not promoted, even when voters are short.
        let t = target(Some(5), Some(3));
        assert_eq!(
            check(&t, 1, &[1, 2, 3], &[4], &[], &[]),
            Some(Change::RemoveLearners(ids(&[4])))
        );
        assert_eq!(check(&t, 1, &[1, 2, 3], &[], &[], &[]), None);
    }

    #[test]
    fn the_last_voters_are_never_removed() {
        let t = target(None, Some(1));
        assert_eq!(check(&t, 2, &[2, 3], &[], &[], &[]), None);
    }

    #[test]
    fn members_outside_the_statefulset_are_left_alone() {
        // Node 9 is a department's own node, joined by hand at its own address.
        let own = [(9, "samr-dc.example:7000")];
        let t = target(Some(5), Some(3));
        assert_eq!(check(&t, 1, &[1, 2, 3], &[9], &[], &own), None);
        let t = target(Some(3), Some(3));
        assert_eq!(check(&t, 1, &[1, 2, 3], &[9], &[], &own), None);
        // Without a template every member is the configuration's to manage.
        let t = MembershipTarget {
            peer_template: None,
            ..target(Some(3), Some(3))
        };
        assert_eq!(
            check(&t, 1, &[1, 2, 3], &[9], &[], &own),
            Some(Change::RemoveLearners(ids(&[9])))
        );
    }

    #[test]
    fn nothing_to_do_when_the_membership_matches() {
        assert_eq!(
            check(&target(Some(3), Some(4)), 2, &[1, 2, 3], &[4], &[], &[]),
            None
        );
        assert_eq!(
            check(&MembershipTarget::default(), 1, &[1], &[2, 3], &[], &[]),
            None
        );
    }
}
