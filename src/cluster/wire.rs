//! What nodes say to each other on Redis channels, as bytes. Sans-IO: what arrives is
//! checked like peer input (a foreign or cut message is an error, never a panic).
//!
//! Every frame: `amw` and a version byte, a kind byte, the sender's node id (8 bytes,
//! big-endian), then the kind's fields; payloads and metadata run to the end.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::ClusterSendError;
use super::ids::NodeId;
use crate::groups::PresenceChange;

const MAGIC: &[u8; 4] = b"amw\x01";
const HEADER: usize = MAGIC.len() + 1 + 8;

/// One frame on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A group broadcast, on the group's channel; `dropped` is how many broadcasts the
    /// sender has failed to publish so far (a rise tells receivers of a gap).
    Broadcast { dropped: u64, text: bool, payload: Bytes },
    /// A member of the group on whose channel this is joined, changed or left; `dropped`
    /// as in `Broadcast`.
    Presence { dropped: u64, change: PresenceChange, seq: u64, meta: String },
    /// A message for one connection, on its node's channel; `req` 0 wants no answer.
    Send { req: u64, seq: u64, text: bool, payload: Bytes },
    /// The answer to a `Send` with a `req`, on the sender's node channel.
    Ack { req: u64, outcome: Outcome },
    /// The sender is alive, on the nodes channel; `dropped` as in `Broadcast`.
    Heartbeat { dropped: u64 },
    /// The sender is leaving, on the nodes channel.
    Bye,
    /// Every member the sender has in the group on whose channel this is (seq and
    /// metadata), sent when its link to Redis is back: what it did meanwhile reached nobody.
    /// `dropped` as in `Broadcast`.
    Roster { dropped: u64, members: Vec<(u64, String)> },
    /// A broadcast to a group with history, at its place there: published by the script
    /// that stored it (the same bytes are the stored entry). `except`: the member on the
    /// sender's node it is not for (0: none).
    Stored { epoch: u64, offset: u64, except: u64, text: bool, payload: Bytes },
}

/// What the owning node did with a `Send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Accepted,
    NoConnection,
    Full,
    Closed,
}

impl Outcome {
    /// The answer to send for what a delivery did.
    pub(crate) fn of(delivered: &Result<(), ClusterSendError>) -> Outcome {
        match delivered {
            Ok(()) => Outcome::Accepted,
            Err(ClusterSendError::NoSuchConnection) => Outcome::NoConnection,
            Err(ClusterSendError::Full) => Outcome::Full,
            Err(_) => Outcome::Closed,
        }
    }

    /// What the sender is told.
    pub(crate) fn into_result(self) -> Result<(), ClusterSendError> {
        match self {
            Outcome::Accepted => Ok(()),
            Outcome::NoConnection => Err(ClusterSendError::NoSuchConnection),
            Outcome::Full => Err(ClusterSendError::Full),
            Outcome::Closed => Err(ClusterSendError::Closed),
        }
    }
}

/// Why bytes on our channels were not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    #[error("not one of ours (no `amw` version 1 header)")]
    Foreign,
    #[error("cut short")]
    Truncated,
    #[error("unknown kind {0}")]
    Kind(u8),
    #[error("bad field: {0}")]
    Field(&'static str),
}

impl Frame {
    pub(crate) fn encode(&self, from: NodeId) -> Bytes {
        let extra = match self {
            Frame::Broadcast { payload, .. }
            | Frame::Send { payload, .. }
            | Frame::Stored { payload, .. } => payload.len() + 24,
            Frame::Presence { meta, .. } => meta.len(),
            Frame::Roster { members, .. } => members.iter().map(|(_, m)| 12 + m.len()).sum(),
            _ => 0,
        };
        let mut out = BytesMut::with_capacity(HEADER + 17 + extra);
        out.put_slice(MAGIC);
        out.put_u8(self.kind());
        out.put_u64(from.0);
        match self {
            Frame::Broadcast { dropped, text, payload } => {
                out.put_u64(*dropped);
                out.put_u8(u8::from(*text));
                out.put_slice(payload);
            }
            Frame::Presence { dropped, change, seq, meta } => {
                out.put_u64(*dropped);
                out.put_u8(change_byte(*change));
                out.put_u64(*seq);
                out.put_slice(meta.as_bytes());
            }
            Frame::Send { req, seq, text, payload } => {
                out.put_u64(*req);
                out.put_u64(*seq);
                out.put_u8(u8::from(*text));
                out.put_slice(payload);
            }
            Frame::Ack { req, outcome } => {
                out.put_u64(*req);
                out.put_u8(*outcome as u8);
            }
            Frame::Heartbeat { dropped } => out.put_u64(*dropped),
            Frame::Bye => {}
            Frame::Roster { dropped, members } => {
                out.put_u64(*dropped);
                out.put_u32(members.len() as u32);
                for (seq, meta) in members {
                    out.put_u64(*seq);
                    out.put_u32(meta.len() as u32);
                    out.put_slice(meta.as_bytes());
                }
            }
            Frame::Stored { epoch, offset, except, text, payload } => {
                out.put_u64(*epoch);
                out.put_u64(*offset);
                out.put_u64(*except);
                out.put_u8(u8::from(*text));
                out.put_slice(payload);
            }
        }
        out.freeze()
    }

    pub(crate) fn kind(&self) -> u8 {
        match self {
            Frame::Broadcast { .. } => 1,
            Frame::Presence { .. } => 2,
            Frame::Send { .. } => 3,
            Frame::Ack { .. } => 4,
            Frame::Heartbeat { .. } => 5,
            Frame::Bye => 6,
            Frame::Roster { .. } => 7,
            Frame::Stored { .. } => 8,
        }
    }

    /// The sender and the frame; text payloads are checked to be UTF-8.
    pub(crate) fn decode(bytes: Bytes) -> Result<(NodeId, Frame), WireError> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(WireError::Foreign);
        }
        let mut r = Reader { bytes, at: MAGIC.len() };
        let kind = r.u8()?;
        let from = match r.u64()? {
            0 => return Err(WireError::Field("node id 0")),
            n => NodeId(n),
        };
        let frame = match kind {
            1 => {
                let dropped = r.u64()?;
                let text = r.flag()?;
                Frame::Broadcast { dropped, text, payload: r.rest_payload(text)? }
            }
            2 => {
                let dropped = r.u64()?;
                let change = byte_change(r.u8()?)?;
                let seq = r.u64()?;
                let meta = String::from_utf8(r.rest().to_vec())
                    .map_err(|_| WireError::Field("metadata not UTF-8"))?;
                Frame::Presence { dropped, change, seq, meta }
            }
            3 => {
                let (req, seq) = (r.u64()?, r.u64()?);
                let text = r.flag()?;
                Frame::Send { req, seq, text, payload: r.rest_payload(text)? }
            }
            4 => {
                let req = r.u64()?;
                let outcome = byte_outcome(r.u8()?)?;
                r.end()?;
                Frame::Ack { req, outcome }
            }
            5 => {
                let dropped = r.u64()?;
                r.end()?;
                Frame::Heartbeat { dropped }
            }
            6 => {
                r.end()?;
                Frame::Bye
            }
            7 => {
                let dropped = r.u64()?;
                Frame::Roster { dropped, members: r.members()? }
            }
            8 => {
                let (epoch, offset, except) = (r.u64()?, r.u64()?, r.u64()?);
                if offset == 0 {
                    return Err(WireError::Field("history offset 0"));
                }
                let text = r.flag()?;
                Frame::Stored { epoch, offset, except, text, payload: r.rest_payload(text)? }
            }
            k => return Err(WireError::Kind(k)),
        };
        Ok((from, frame))
    }
}

fn byte_outcome(b: u8) -> Result<Outcome, WireError> {
    Ok(match b {
        0 => Outcome::Accepted,
        1 => Outcome::NoConnection,
        2 => Outcome::Full,
        3 => Outcome::Closed,
        _ => return Err(WireError::Field("outcome")),
    })
}

fn change_byte(c: PresenceChange) -> u8 {
    match c {
        // Only watchers are told `Present`; on the bus it is a join.
        PresenceChange::Joined | PresenceChange::Present => 0,
        PresenceChange::Updated => 1,
        PresenceChange::Left => 2,
        PresenceChange::Disconnected => 3,
    }
}

fn byte_change(b: u8) -> Result<PresenceChange, WireError> {
    Ok(match b {
        0 => PresenceChange::Joined,
        1 => PresenceChange::Updated,
        2 => PresenceChange::Left,
        3 => PresenceChange::Disconnected,
        _ => return Err(WireError::Field("presence change")),
    })
}

struct Reader {
    bytes: Bytes,
    at: usize,
}

impl Reader {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let slice = self.bytes.get(self.at..self.at + N).ok_or(WireError::Truncated)?;
        self.at += N;
        Ok(slice.try_into().unwrap_or([0; N]))
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn bytes(&mut self, len: usize) -> Result<Bytes, WireError> {
        if len > self.remaining() {
            return Err(WireError::Truncated);
        }
        let out = self.bytes.slice(self.at..self.at + len);
        self.at += len;
        Ok(out)
    }

    fn flag(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Field("text flag")),
        }
    }

    fn rest(&mut self) -> Bytes {
        let rest = self.bytes.slice(self.at..);
        self.at = self.bytes.len();
        rest
    }

    fn rest_payload(&mut self, text: bool) -> Result<Bytes, WireError> {
        let rest = self.rest();
        if text && simdutf8::basic::from_utf8(&rest).is_err() {
            return Err(WireError::Field("text payload not UTF-8"));
        }
        Ok(rest)
    }

    /// A roster's members: a count, then each one's number and metadata, to the end.
    fn members(&mut self) -> Result<Vec<(u64, String)>, WireError> {
        let count = self.u32()? as usize;
        // Each member takes 12 bytes at least: a count beyond what is there is a lie.
        if count > self.remaining() / 12 {
            return Err(WireError::Truncated);
        }
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            let seq = self.u64()?;
            let len = self.u32()? as usize;
            let meta = String::from_utf8(self.bytes(len)?.to_vec())
                .map_err(|_| WireError::Field("metadata not UTF-8"))?;
            members.push((seq, meta));
        }
        self.end()?;
        Ok(members)
    }

    fn end(&self) -> Result<(), WireError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(WireError::Field("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<Frame> {
        vec![
            Frame::Broadcast { dropped: 0, text: true, payload: Bytes::from_static("héllo".as_bytes()) },
            Frame::Broadcast { dropped: 3, text: false, payload: Bytes::from_static(&[0, 255, 1]) },
            Frame::Presence {
                dropped: 2,
                change: PresenceChange::Updated,
                seq: 7,
                meta: r#"{"name":"ada"}"#.into(),
            },
            Frame::Presence {
                dropped: 0,
                change: PresenceChange::Disconnected,
                seq: u64::MAX,
                meta: String::new(),
            },
            Frame::Send { req: 9, seq: 3, text: false, payload: Bytes::new() },
            Frame::Ack { req: 9, outcome: Outcome::Full },
            Frame::Heartbeat { dropped: 5 },
            Frame::Bye,
            Frame::Roster {
                dropped: 1,
                members: vec![(1, "ada".into()), (u64::MAX, String::new()), (3, "é".into())],
            },
            Frame::Roster { dropped: 0, members: Vec::new() },
            Frame::Stored {
                epoch: u64::MAX,
                offset: 1,
                except: 0,
                text: true,
                payload: Bytes::from_static(b"{}"),
            },
            Frame::Stored { epoch: 7, offset: u64::MAX, except: 3, text: false, payload: Bytes::new() },
        ]
    }

    #[test]
    fn every_frame_decodes_to_itself() {
        let node = NodeId(0x1234);
        for f in frames() {
            assert_eq!(Frame::decode(f.encode(node)), Ok((node, f)));
        }
    }

    /// Every cut of every frame, and every byte changed, is either refused or read as some
    /// frame; nothing panics.
    #[test]
    fn cut_or_changed_frames_are_refused_without_panic() {
        let node = NodeId(0x1234);
        for f in frames() {
            let bytes = f.encode(node);
            // Payloads and metadata run to the end: a cut within them is a shorter one.
            let fixed = match f {
                Frame::Broadcast { .. } => HEADER + 9,
                Frame::Presence { .. } => HEADER + 17,
                Frame::Send { .. } => HEADER + 17,
                Frame::Stored { .. } => HEADER + 25,
                _ => bytes.len(),
            };
            for cut in 0..fixed {
                assert!(Frame::decode(bytes.slice(..cut)).is_err(), "{f:?} cut at {cut}");
            }
            for at in 0..bytes.len() {
                for b in [0u8, 1, 7, 0x80, 0xff] {
                    let mut changed = bytes.to_vec();
                    changed[at] = b;
                    let _ = Frame::decode(Bytes::from(changed));
                }
            }
        }
        assert_eq!(Frame::decode(Bytes::from_static(b"hello world")), Err(WireError::Foreign));
        assert_eq!(
            Frame::decode(Bytes::from_static(b"amw\x01\x09\0\0\0\0\0\0\0\x01")),
            Err(WireError::Kind(9))
        );
        // A roster that claims more members than its bytes can hold is refused before
        // anything is allocated for them.
        let mut lying = b"amw\x01\x07\0\0\0\0\0\0\0\x01".to_vec();
        lying.extend_from_slice(&0u64.to_be_bytes());
        lying.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Frame::decode(Bytes::from(lying)), Err(WireError::Truncated));
        let bad_text =
            Frame::Broadcast { dropped: 0, text: true, payload: Bytes::from_static(&[0xff]) }.encode(node);
        assert!(Frame::decode(bad_text).is_err());
    }
}
