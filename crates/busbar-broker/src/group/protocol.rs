//! The classic group protocol's choice of assignor: whether the members share one, and Kafka's
//! vote among those they all support. Pure functions over each member's (name, metadata) list.

use std::collections::HashSet;

/// True when every member supports at least one protocol in common.
pub(super) fn common_protocol<'a>(all: impl Iterator<Item = &'a Vec<(String, Vec<u8>)>>) -> bool {
    let mut common: Option<HashSet<&str>> = None;
    for protocols in all {
        let names: HashSet<&str> = protocols.iter().map(|(n, _)| n.as_str()).collect();
        common = Some(match common {
            None => names,
            Some(c) => c.intersection(&names).copied().collect(),
        });
    }
    common.is_some_and(|c| !c.is_empty())
}

/// Kafka's vote: among the protocols every member supports, each member votes for its most
/// preferred one; the most votes wins (ties: the first member's preference order).
pub(super) fn choose_protocol<'a>(
    all: impl Iterator<Item = &'a Vec<(String, Vec<u8>)>> + Clone,
) -> String {
    let mut candidates: Option<Vec<String>> = None;
    for protocols in all.clone() {
        let names: Vec<String> = protocols.iter().map(|(n, _)| n.clone()).collect();
        candidates = Some(match candidates {
            None => names,
            Some(c) => c.into_iter().filter(|n| names.contains(n)).collect(),
        });
    }
    let candidates = candidates.unwrap_or_default();
    let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
    for protocols in all {
        if let Some((name, _)) = protocols.iter().find(|(n, _)| candidates.contains(n)) {
            if let Some(v) = votes.iter_mut().find(|(c, _)| c == name) {
                v.1 += 1;
            }
        }
    }
    let best = votes.iter().map(|(_, n)| *n).max().unwrap_or(0);
    votes
        .into_iter()
        .find(|(_, n)| *n == best)
        .map(|(c, _)| c)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(names: &[&str]) -> Vec<(String, Vec<u8>)> {
        names.iter().map(|n| (n.to_string(), Vec::new())).collect()
    }

    #[test]
    fn members_vote_among_the_protocols_they_share() {
        let a = member(&["range", "roundrobin"]);
        let b = member(&["roundrobin", "range"]);
        let c = member(&["roundrobin"]);
        assert!(common_protocol([&a, &b].into_iter()));
        assert!(!common_protocol([&a, &member(&["sticky"])].into_iter()));
        assert_eq!(
            choose_protocol([&a, &b].into_iter()),
            "range",
            "a tie: the first member's order"
        );
        assert_eq!(choose_protocol([&a, &b, &c].into_iter()), "roundrobin");
    }
}
