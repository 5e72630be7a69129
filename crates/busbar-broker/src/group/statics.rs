//! Static membership (KIP-345, `group.instance.id`): a static member joining again takes its
//! predecessor's place (new member id, same assignment and leadership), old ids are fenced, and
//! LeaveGroup works by instance id. The instance map (`Group::statics`) holds live members only.

use super::protocol::choose_protocol;
use super::{response, unknown, Group, GroupState, Groups, JoinRequest, JoinResponse};
use crate::error::Result;
use tokio::sync::oneshot;

impl Groups {
    /// A static member joining again with an empty member id: a new id takes the old one's place
    /// (its assignment, and leadership); the old id's waiting requests end (fenced).
    pub(super) fn replace_static(
        &self,
        g: &mut Group,
        req: JoinRequest,
        old_id: String,
        now: i64,
    ) -> oneshot::Receiver<Result<JoinResponse>> {
        let new_id = self.new_member_id(&req.client_id);
        let mut m = g
            .members
            .remove(&old_id)
            .expect("statics name live members");
        if let Some(tx) = m.join_waiter.take() {
            let _ = tx.send(Err(unknown(&req.group, &old_id)));
        }
        if let Some(tx) = m.sync_waiter.take() {
            let _ = tx.send(Err(unknown(&req.group, &old_id)));
        }
        let previous_leader = g.leader.clone();
        if g.leader == old_id {
            g.leader = new_id.clone();
        }
        let changed = m.protocols != req.protocols;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.protocols = req.protocols;
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms.max(req.session_timeout_ms);
        m.last_seen_ms = now;
        let (tx, rx) = oneshot::channel();
        m.join_waiter = Some(tx);
        if let Some(i) = &m.instance_id {
            g.statics.insert(i.clone(), new_id.clone());
        }
        g.members.insert(new_id.clone(), m);
        match g.state {
            GroupState::Stable
                if !changed
                    && choose_protocol(g.members.values().map(|m| &m.protocols)) == g.protocol =>
            {
                // As Kafka: the current generation, and the previous leader's id so that the new
                // id does not take itself for the leader (a Stable group would not pass on its
                // assignment); SyncGroup answers the predecessor's assignment.
                let mut resp = response(g, &new_id);
                resp.leader = previous_leader;
                resp.members.clear();
                if let Some(tx) = g
                    .members
                    .get_mut(&new_id)
                    .and_then(|m| m.join_waiter.take())
                {
                    let _ = tx.send(Ok(resp));
                }
            }
            GroupState::PreparingRebalance => {}
            _ => self.prepare_rebalance(g, now),
        }
        self.maybe_complete_join(g, now);
        rx
    }

    /// KIP-345 fencing: true when `instance` is held by a member id other than `member`; front
    /// ends answer FENCED_INSTANCE_ID then (the old id of a static member that joined again).
    pub fn fenced(&self, group: &str, instance: &str, member: &str) -> bool {
        self.lock()
            .get(group)
            .and_then(|g| g.statics.get(instance))
            .is_some_and(|id| id != member)
    }

    /// LeaveGroup by instance id (v3+): removes the member holding `instance` when `member` is
    /// empty or is that member's id. `Ok(false)`: the member id is another (fenced); an unknown
    /// instance id is UNKNOWN_MEMBER_ID.
    pub fn leave_instance(&self, group: &str, instance: &str, member: &str) -> Result<bool> {
        let now = self.clock.now_ms();
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group) else {
            return Err(unknown(group, member));
        };
        match g.statics.get(instance).cloned() {
            None => Err(unknown(group, member)),
            Some(id) if !member.is_empty() && id != member => Ok(false),
            Some(id) => self.leave_in(g, group, &id, now).map(|()| true),
        }
    }
}

/// Drops the instance ids of members no longer in the group.
pub(super) fn forget_statics(g: &mut Group) {
    let members = &g.members;
    g.statics.retain(|_, id| members.contains_key(id));
}
