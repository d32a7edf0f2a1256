//! Redis Cluster's slots, sans-IO: which of the 16,384 slots a key or a shard channel
//! hashes to, and which primary serves each slot (read from `CLUSTER SLOTS`).
//!
//! Every key and channel of a group carries the same hash tag (see `keys`), so a group
//! lives in one slot: its history script runs on one shard, and its broadcasts touch
//! that shard only.

use redis::Value;

use super::endpoint::Addr;

pub(crate) const SLOTS: u16 = 16384;

/// The slot of `key`: CRC16 (XMODEM) of its hash tag, or of the whole key when it has
/// none, as Redis Cluster computes it.
pub(crate) fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

/// What a key is hashed by: the text between its first `{` and the first `}` after it,
/// unless that is empty.
fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else { return key };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(0) | None => key,
        Some(len) => &key[open + 1..open + 1 + len],
    }
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// Which primary serves each slot.
#[derive(Clone, Debug)]
pub(crate) struct SlotMap {
    /// Slot ranges (first, last, inclusive) and the index of their primary.
    ranges: Vec<(u16, u16, usize)>,
    primaries: Vec<Addr>,
}

impl SlotMap {
    /// From a `CLUSTER SLOTS` answer. Every slot must be served: a cluster with slots
    /// unassigned (being made, or a shard lost with no replica) cannot take every group.
    pub(crate) fn parse(answer: &Value) -> Result<SlotMap, String> {
        let Value::Array(entries) = answer else { return Err("CLUSTER SLOTS: not an array".into()) };
        let mut map = SlotMap { ranges: Vec::new(), primaries: Vec::new() };
        for entry in entries {
            let Value::Array(parts) = entry else {
                return Err("CLUSTER SLOTS: an entry is not an array".into());
            };
            let (Some(first), Some(last), Some(Value::Array(node))) = (
                parts.first().and_then(int).and_then(|n| u16::try_from(n).ok()),
                parts.get(1).and_then(int).and_then(|n| u16::try_from(n).ok()),
                parts.get(2),
            ) else {
                return Err("CLUSTER SLOTS: an entry without its range and primary".into());
            };
            let (Some(host), Some(port)) = (node.first().and_then(text), node.get(1).and_then(int)) else {
                return Err("CLUSTER SLOTS: a primary without host and port".into());
            };
            let port = u16::try_from(port).map_err(|_| format!("CLUSTER SLOTS: port {port}"))?;
            if first > last || last >= SLOTS {
                return Err(format!("CLUSTER SLOTS: range {first}-{last}"));
            }
            let addr = (host, port);
            let at = match map.primaries.iter().position(|p| *p == addr) {
                Some(at) => at,
                None => {
                    map.primaries.push(addr);
                    map.primaries.len() - 1
                }
            };
            map.ranges.push((first, last, at));
        }
        map.ranges.sort_unstable();
        let mut next = 0u32;
        for &(first, last, _) in &map.ranges {
            if u32::from(first) != next {
                return Err(format!("slot {next} is served by no primary (the cluster is not whole)"));
            }
            next = u32::from(last) + 1;
        }
        if next != u32::from(SLOTS) {
            return Err(format!("slot {next} is served by no primary (the cluster is not whole)"));
        }
        Ok(map)
    }

    /// Whether `other` puts every slot on the same primary (whatever order the answers
    /// listed them in).
    pub(crate) fn same_as(&self, other: &SlotMap) -> bool {
        let owners = |m: &SlotMap| {
            m.ranges.iter().map(|&(f, l, at)| (f, l, m.primaries[at].clone())).collect::<Vec<_>>()
        };
        owners(self) == owners(other)
    }

    /// The primaries, each once; shards are numbered by their place here.
    pub(crate) fn primaries(&self) -> &[Addr] {
        &self.primaries
    }

    /// The shard that serves `key`.
    pub(crate) fn shard_of(&self, key: &[u8]) -> usize {
        let slot = slot(key);
        let at = self.ranges.partition_point(|&(_, last, _)| last < slot);
        // `parse` proved the ranges cover every slot.
        self.ranges.get(at).map_or(0, |&(_, _, shard)| shard)
    }

    /// A channel named `<base>:<n>` for each shard, hashing to it: the probes that tell
    /// whether that shard's subscription still carries. Nodes on the same map find the
    /// same names, so they share them.
    pub(crate) fn probe_channels(&self, base: &str) -> Vec<String> {
        let mut found: Vec<Option<String>> = vec![None; self.primaries.len()];
        let mut left = found.len();
        // A shard with even one slot is found within a few tens of thousands of names.
        for n in 0u32..1_000_000 {
            if left == 0 {
                break;
            }
            let name = format!("{base}:{n}");
            let shard = self.shard_of(name.as_bytes());
            if found[shard].is_none() {
                found[shard] = Some(name);
                left -= 1;
            }
        }
        found.into_iter().map(Option::unwrap_or_default).collect()
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // The reference vector of the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        // From `CLUSTER KEYSLOT` on redis-server 7.0.
        assert_eq!(slot(b"amw:g:{chat}"), 14028);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        // An empty tag is no tag.
        assert_eq!(slot(b"a{}b"), crc16(b"a{}b") % SLOTS);
        assert_eq!(slot(b"a{b"), crc16(b"a{b") % SLOTS);
        assert_eq!(slot(b"x{a}y{b}"), slot(b"{a}"));
    }

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.into()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    fn range(first: i64, last: i64, primary: Value) -> Value {
        Value::Array(vec![Value::Int(first), Value::Int(last), primary, node("127.0.0.1", 9)])
    }

    #[test]
    fn the_map_routes_every_slot_to_its_primary() {
        let answer = Value::Array(vec![
            range(5461, 10922, node("127.0.0.1", 7002)),
            range(0, 5460, node("127.0.0.1", 7001)),
            range(10923, 16383, node("127.0.0.1", 7003)),
        ]);
        let map = SlotMap::parse(&answer).unwrap();
        assert_eq!(map.primaries().len(), 3);
        let Value::Array(mut listed) = answer.clone() else { unreachable!() };
        listed.reverse();
        let reordered = SlotMap::parse(&Value::Array(listed.clone())).unwrap();
        assert!(reordered.same_as(&map) && map.same_as(&reordered));
        listed[0] = range(10923, 16383, node("127.0.0.1", 7004));
        assert!(!SlotMap::parse(&Value::Array(listed)).unwrap().same_as(&map), "a primary replaced");
        let at = |key: &str| map.primaries()[map.shard_of(key.as_bytes())].1;
        assert_eq!(at("amw:g:{chat}"), 7003);
        assert_eq!(at("amw:h:{chat}"), 7003);
        assert_eq!(at("foo"), 7003);
        assert_eq!(at("{user1000}"), slot_owner(slot(b"user1000")));
        let probes = map.probe_channels("amw:probe:1");
        assert_eq!(probes.len(), 3);
        for (shard, channel) in probes.iter().enumerate() {
            assert_eq!(map.shard_of(channel.as_bytes()), shard, "{channel}");
        }
    }

    fn slot_owner(slot: u16) -> u16 {
        match slot {
            0..=5460 => 7001,
            5461..=10922 => 7002,
            _ => 7003,
        }
    }

    #[test]
    fn a_map_with_holes_or_nonsense_is_refused() {
        let hole = Value::Array(vec![range(0, 5460, node("h", 1)), range(5462, 16383, node("h", 2))]);
        assert!(SlotMap::parse(&hole).unwrap_err().contains("5461"));
        let short = Value::Array(vec![range(0, 100, node("h", 1))]);
        assert!(SlotMap::parse(&short).unwrap_err().contains("101"));
        assert!(SlotMap::parse(&Value::Nil).is_err());
        assert!(SlotMap::parse(&Value::Array(vec![Value::Int(3)])).is_err());
        let wrong = Value::Array(vec![range(0, 16384, node("h", 1))]);
        assert!(SlotMap::parse(&wrong).is_err());
        let no_port = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(16383),
            Value::Array(vec![Value::BulkString(b"h".to_vec())]),
        ])]);
        assert!(SlotMap::parse(&no_port).is_err());
    }
}
