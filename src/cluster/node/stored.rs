//! History in Redis, the node's side of it: broadcasts stored and published by one script
//! (so that the order in a group's stream is the order every node delivers in), catch-up
//! reads of what a node missed, and joins that replay what a member missed.
//!
//! A publish is a compare-and-set: the node builds each broadcast for the position it
//! expects the group to give it, and the script stores and publishes the batch only if
//! the group's history stands where the node thought; otherwise it answers where it does
//! stand, and the node builds again for that. So a broadcast always carries its own
//! position, a batch from one node keeps its order, and no two broadcasts share a place.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::Value;

use super::{Node, Redis};
use crate::cluster::keys::Keys;
use crate::cluster::link::Publish;
use crate::cluster::wire::Frame;
use crate::groups::{HistoryError, HistoryLimits, Position, Published};

/// Stores a batch of broadcasts (frames built for the offsets after ARGV[4] in epoch
/// ARGV[3]) if the group's history stands there; trims by count, bytes and age; publishes
/// each frame as it stores it. Makes the history (epoch ARGV[2]) if there is none, or if it
/// was written under another Redis process than ARGV[9] (the run id the node saw when it
/// connected): a Redis that restarted or failed over may have come back with less than it
/// gave out (a snapshot, an AOF that lost its last second, a replica behind its primary), so
/// its offsets could be given out again for other broadcasts. A node whose run id is not
/// the server's is told so with an error, and reconnects.
/// Answers {1, epoch, last offset} when stored, {0, epoch, last offset} when not.
const PUBLISH: &str = r#"
local stream, meta = KEYS[1], KEYS[2]
local channel, candidate, want_epoch, want_last = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local max_len, max_age, max_bytes, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local run, n = ARGV[9], tonumber(ARGV[10])
local epoch = redis.call('HGET', meta, 'e')
if epoch and redis.call('HGET', meta, 'r') ~= run then
  local actual = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
  if actual ~= run then
    return redis.error_reply('AMWSTALE the node knows another Redis process')
  end
  epoch = nil
end
if not epoch then
  epoch = candidate
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'e', epoch, 'o', 0, 'b', 0, 'r', run)
  redis.call('PEXPIRE', meta, ttl)
end
local last = tonumber(redis.call('HGET', meta, 'o'))
if n == 0 or epoch ~= want_epoch or last ~= want_last then
  return {0, epoch, last}
end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local bytes = tonumber(redis.call('HGET', meta, 'b'))
for i = 1, n do
  local f = ARGV[10 + i]
  last = last + 1
  redis.call('XADD', stream, last .. '-0', 't', ms, 'f', f)
  bytes = bytes + #f
  redis.call('PUBLISH', channel, f)
end
local len = redis.call('XLEN', stream)
local guard = n + 64
while guard > 0 do
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
  if not first then break end
  local t, size = tonumber(first[2][2]), #first[2][4]
  if len <= max_len and bytes <= max_bytes and t >= ms - max_age then break end
  redis.call('XDEL', stream, first[1])
  len = len - 1
  bytes = bytes - size
  guard = guard - 1
end
redis.call('HSET', meta, 'o', last, 'b', bytes)
redis.call('PEXPIRE', stream, ttl)
redis.call('PEXPIRE', meta, ttl)
return {1, epoch, last}
"#;

/// `PUBLISH` as Redis Cluster needs it: on the group's shard channel (same slot as its
/// keys, so the script stays on one shard).
static SHARDED_PUBLISH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| PUBLISH.replacen("redis.call('PUBLISH'", "redis.call('SPUBLISH'", 1));

/// The store-and-publish script for these keys' deployment.
pub(super) fn publish_script(keys: &Keys) -> &'static str {
    if keys.sharded() {
        &SHARDED_PUBLISH
    } else {
        PUBLISH
    }
}

/// Starts a new epoch (under run id ARGV[4]) if the group's history is in epoch ARGV[1] and
/// went back behind offset ARGV[2] (Redis lost its last writes): those offsets must not be
/// given again.
pub(super) const RENEW: &str = r#"
local e = redis.call('HGET', KEYS[2], 'e')
local o = tonumber(redis.call('HGET', KEYS[2], 'o') or 0)
if e == ARGV[1] and o < tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', ARGV[3], 'o', 0, 'b', 0, 'r', ARGV[4])
  return 1
end
return 0
"#;

/// Tries per batch before a publish gives up to other nodes publishing to the group.
const ATTEMPTS: usize = 16;
/// How long history outlives its last broadcast, beyond its age bound: the epoch stays, so
/// that a member that saw the last broadcast recovers with nothing to replay.
const KEEP_EPOCH: Duration = Duration::from_secs(86_400);

impl Node {
    /// Stores and publishes the broadcasts of `publishes`, each group's in order.
    pub(super) async fn publish_all(
        &mut self,
        r: &mut Redis,
        publishes: Vec<Publish>,
    ) -> redis::RedisResult<()> {
        let mut by_group: Vec<(Arc<str>, Vec<Publish>)> = Vec::new();
        for p in publishes {
            match by_group.iter_mut().find(|(g, _)| *g == p.group) {
                Some((_, list)) => list.push(p),
                None => by_group.push((p.group.clone(), vec![p])),
            }
        }
        for _ in 0..ATTEMPTS {
            if by_group.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for (group, batch) in &by_group {
                self.add_publish(&mut pipe, group, batch, r.runs.of(&self.state.keys.history(group)));
            }
            let sent = std::time::Instant::now();
            let answers: Vec<Value> = match pipe.query_async(&mut r.conn).await {
                Ok(a) => a,
                Err(e) => {
                    for (_, batch) in by_group {
                        for p in batch {
                            let _ = p.reply.send(Err(HistoryError::Uncertain(e.to_string())));
                        }
                    }
                    return Err(e);
                }
            };
            crate::telemetry::redis_round_trip(sent.elapsed());
            let mut again = Vec::new();
            for ((group, batch), answer) in by_group.into_iter().zip(answers) {
                match parse_answer(&answer) {
                    Some((true, epoch, last)) => self.published(&group, batch, epoch, last),
                    Some((false, epoch, last)) => {
                        self.not_stored(r, &group, epoch, last).await?;
                        again.push((group, batch));
                    }
                    None => {
                        let why = format!("unexpected answer from Redis: {answer:?}");
                        for p in batch {
                            let _ = p.reply.send(Err(HistoryError::Uncertain(why.clone())));
                        }
                    }
                }
            }
            by_group = again;
        }
        for (group, batch) in by_group {
            tracing::warn!(%group, "cluster: broadcasts with history not published: the group's position kept moving");
            for p in batch {
                let why = "other nodes kept taking the group's next position".to_owned();
                let _ = p.reply.send(Err(HistoryError::NotPublished(why)));
            }
        }
        Ok(())
    }

    /// The script call for one group's batch, built for where the group was last seen.
    fn add_publish(&self, pipe: &mut redis::Pipeline, group: &Arc<str>, batch: &[Publish], run: &str) {
        let (epoch, last) = self.state.streams.known(group);
        let me = self.state.me();
        // Not known yet: an empty batch learns where the group stands.
        let frames: Vec<Bytes> = if epoch == 0 {
            Vec::new()
        } else {
            (1..)
                .zip(batch)
                .map(|(i, p)| {
                    let msg = (p.build)(&Position { epoch, offset: last + i });
                    let except = p.except.unwrap_or(0);
                    let (text, payload) = (msg.is_text(), msg.bytes().clone());
                    Frame::Stored { epoch, offset: last + i, except, text, payload }.encode(me)
                })
                .collect()
        };
        let limits = batch[0].limits;
        let keys = &self.state.keys;
        let cmd = pipe
            .cmd("EVAL")
            .arg(publish_script(keys))
            .arg(2)
            .arg(keys.history(group))
            .arg(keys.history_meta(group))
            .arg(keys.group(group))
            .arg(new_epoch().to_string())
            .arg(epoch.to_string())
            .arg(last)
            .arg(limits.max_messages)
            .arg(limits.max_age.as_millis() as u64)
            .arg(limits.max_bytes)
            .arg(ttl(&limits))
            .arg(run)
            .arg(frames.len());
        for f in &frames {
            cmd.arg(&f[..]);
        }
    }

    /// The script did not store a batch: history stands at (`epoch`, `last`), which the next
    /// attempt builds for; history behind what it gave out in the same epoch is renewed first,
    /// or those offsets would name other broadcasts.
    async fn not_stored(
        &mut self,
        r: &mut Redis,
        group: &Arc<str>,
        epoch: u64,
        last: u64,
    ) -> redis::RedisResult<()> {
        let (seen_epoch, seen) = self.state.streams.known(group);
        if seen_epoch == epoch && last < seen {
            self.renew(r, group, epoch, seen).await?;
            self.state.streams.stands_at(group, 0, 0);
        } else {
            self.state.streams.stands_at(group, epoch, last);
        }
        Ok(())
    }

    /// Starts a new epoch for `group` if its history is still in `epoch` and behind `past`.
    pub(super) async fn renew(
        &mut self,
        r: &mut Redis,
        group: &Arc<str>,
        epoch: u64,
        past: u64,
    ) -> redis::RedisResult<()> {
        tracing::warn!(%group, epoch, past, "cluster: history went back behind what it gave out; new epoch");
        let keys = &self.state.keys;
        let _: i64 = redis::cmd("EVAL")
            .arg(RENEW)
            .arg(2)
            .arg(keys.history(group))
            .arg(keys.history_meta(group))
            .arg(epoch.to_string())
            .arg(past)
            .arg(new_epoch().to_string())
            .arg(r.runs.of(&self.state.keys.history(group)))
            .query_async(&mut r.conn)
            .await?;
        Ok(())
    }

    /// A batch was stored as `last - len + 1 ..= last`: each publisher is told its place.
    fn published(&mut self, group: &Arc<str>, batch: Vec<Publish>, epoch: u64, last: u64) {
        crate::telemetry::cluster_published(batch.len());
        self.state.streams.learned(group, epoch, last);
        let first = last + 1 - batch.len() as u64;
        let here = self.state.groups.count(group);
        for (i, p) in (0..).zip(batch) {
            let position = Position { epoch, offset: first + i };
            let _ = p.reply.send(Ok(Published { position, reached: here }));
        }
    }
}

/// {1|0, epoch, last} from the script.
pub(super) fn parse_answer(v: &Value) -> Option<(bool, u64, u64)> {
    let Value::Array(items) = v else { return None };
    let int = |v: &Value| match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    };
    match &items[..] {
        [ok, epoch, last] => Some((int(ok)? == 1, int(epoch)?, int(last)?)),
        _ => None,
    }
}

/// A new epoch: random, never 0 (0 means "not known").
pub(super) fn new_epoch() -> u64 {
    rand::random::<u64>().max(1)
}

/// Milliseconds a group's history keys live after its last broadcast.
pub(super) fn ttl(limits: &HistoryLimits) -> u64 {
    (limits.max_age + KEEP_EPOCH).as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_answer_is_read_or_refused() {
        let ok = Value::Array(vec![Value::Int(1), Value::BulkString(b"42".to_vec()), Value::Int(7)]);
        assert_eq!(parse_answer(&ok), Some((true, 42, 7)));
        let moved = Value::Array(vec![Value::Int(0), Value::BulkString(b"42".to_vec()), Value::Int(9)]);
        assert_eq!(parse_answer(&moved), Some((false, 42, 9)));
        assert_eq!(parse_answer(&Value::Int(1)), None);
        assert_eq!(parse_answer(&Value::Array(vec![Value::Int(1)])), None);
        assert!(new_epoch() != 0);
    }
}
