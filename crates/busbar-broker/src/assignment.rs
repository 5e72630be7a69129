//! Kafka's consumer protocol (protocol type "consumer"): the subscription a member sends in
//! JoinGroup and the assignment the leader hands out in SyncGroup, plus the range assignor. Busbar's
//! own group members (in-process and HTTP consumers) speak it, so they share groups with Kafka
//! clients. Decoding accepts versions 0–3 (later versions only append fields).

use std::collections::BTreeMap;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = usize::try_from(self.i16()?).ok()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    /// An array length, bounded by the bytes left (each element takes at least `min` bytes).
    fn len(&mut self, min: usize) -> Option<usize> {
        let n = usize::try_from(self.i32()?).ok()?;
        (n.saturating_mul(min) <= self.b.len() - self.pos).then_some(n)
    }
}

/// ConsumerProtocolSubscription v0 for `topics`.
pub fn encode_subscription(topics: &[String]) -> Vec<u8> {
    let mut out = 0i16.to_be_bytes().to_vec();
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        put_str(&mut out, t);
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out
}

/// The topics of a subscription, or `None` if the bytes are not one.
pub fn decode_subscription(b: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader { b, pos: 0 };
    if r.i16()? < 0 {
        return None;
    }
    let n = r.len(2)?;
    (0..n).map(|_| r.string()).collect()
}

/// ConsumerProtocolAssignment v0.
pub fn encode(assignment: &[(String, Vec<u32>)]) -> Vec<u8> {
    let mut out = 0i16.to_be_bytes().to_vec();
    out.extend_from_slice(&(assignment.len() as i32).to_be_bytes());
    for (t, ps) in assignment {
        put_str(&mut out, t);
        out.extend_from_slice(&(ps.len() as i32).to_be_bytes());
        for p in ps {
            out.extend_from_slice(&(*p as i32).to_be_bytes());
        }
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out
}

/// The (topic, partitions) of an assignment; empty bytes are an empty assignment.
pub fn decode(b: &[u8]) -> Option<Vec<(String, Vec<u32>)>> {
    if b.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader { b, pos: 0 };
    if r.i16()? < 0 {
        return None;
    }
    let n = r.len(6)?;
    (0..n)
        .map(|_| {
            let t = r.string()?;
            let k = r.len(4)?;
            let ps = (0..k)
                .map(|_| r.i32().and_then(|p| u32::try_from(p).ok()))
                .collect::<Option<Vec<u32>>>()?;
            Some((t, ps))
        })
        .collect()
}

/// Kafka's RangeAssignor: per topic, members subscribed to it sorted by id share its partitions in
/// contiguous ranges, the first `partitions % members` getting one more.
pub fn range(
    members: &[(String, Vec<String>)],
    partitions_of: impl Fn(&str) -> u32,
) -> BTreeMap<String, Vec<(String, Vec<u32>)>> {
    let mut out: BTreeMap<String, Vec<(String, Vec<u32>)>> = members
        .iter()
        .map(|(m, _)| (m.clone(), Vec::new()))
        .collect();
    let mut topics: Vec<&String> = members.iter().flat_map(|(_, ts)| ts.iter()).collect();
    topics.sort();
    topics.dedup();
    for topic in topics {
        let mut subs: Vec<&String> = members
            .iter()
            .filter(|(_, ts)| ts.contains(topic))
            .map(|(m, _)| m)
            .collect();
        subs.sort();
        let n = partitions_of(topic);
        let (per, extra) = (n / subs.len() as u32, n % subs.len() as u32);
        let mut next = 0;
        for (i, m) in subs.into_iter().enumerate() {
            let count = per + u32::from((i as u32) < extra);
            if count > 0 {
                out.get_mut(m)
                    .expect("member listed")
                    .push((topic.clone(), (next..next + count).collect()));
            }
            next += count;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let topics = vec!["a".to_string(), "orders".to_string()];
        assert_eq!(
            decode_subscription(&encode_subscription(&topics)),
            Some(topics)
        );
        let a = vec![("a".to_string(), vec![0, 2]), ("b".to_string(), vec![])];
        assert_eq!(decode(&encode(&a)), Some(a));
        assert_eq!(decode(&[]), Some(vec![]));
        assert_eq!(
            decode(&[0, 0, 0x7f, 0xff, 0xff, 0xff]),
            None,
            "absurd lengths are refused, not allocated"
        );
        assert_eq!(decode_subscription(&[0, 0, 0, 0, 0, 1, 0, 9, b'x']), None);
    }

    #[test]
    fn range_assignment_matches_kafka() {
        let m = |id: &str, ts: &[&str]| {
            (
                id.to_string(),
                ts.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            )
        };
        let got = range(&[m("c2", &["t"]), m("c1", &["t", "u"])], |t| {
            if t == "t" {
                5
            } else {
                2
            }
        });
        assert_eq!(
            got["c1"],
            vec![
                ("t".to_string(), vec![0, 1, 2]),
                ("u".to_string(), vec![0, 1])
            ]
        );
        assert_eq!(got["c2"], vec![("t".to_string(), vec![3, 4])]);
    }
}
