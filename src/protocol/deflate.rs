//! permessage-deflate (RFC 7692): parameter negotiation for both roles, and the
//! compressor/decompressor pair with context takeover and bounded inflation.

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{Extension, ProtocolError, Role};

/// The extension token.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What this endpoint asks for or agrees to when permessage-deflate is enabled.
///
/// ```
/// use actix_meta_websocket::protocol::DeflateConfig;
/// let cfg = DeflateConfig { client_no_context_takeover: true, ..DeflateConfig::default() };
/// assert_eq!(
///     cfg.client_offer(),
///     "permessage-deflate; client_no_context_takeover; client_max_window_bits"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Ask (client) or insist (server) that the server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// Ask (client) or insist (server) that the client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// Largest server window, 8..=15 (15 = 32 KiB, the default; smaller saves memory).
    pub server_max_window_bits: u8,
    /// Largest client window, 8..=15.
    pub client_max_window_bits: u8,
    /// zlib level 0..=9 for outgoing messages (default 6).
    pub level: u32,
    /// Outgoing messages shorter than this many bytes are sent uncompressed (default 128).
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 6,
            threshold: 128,
        }
    }
}

/// The parameters both ends agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The server's window, 8..=15.
    pub server_max_window_bits: u8,
    /// The client's window, 8..=15.
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// Why a server's permessage-deflate answer cannot be accepted by the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unacceptable permessage-deflate response: {0}")]
pub struct DeflateNegotiationError(pub String);

/// RFC 7692 7.1.2: "8" to "15", no leading zeros.
fn parse_bits(v: &str) -> Option<u8> {
    match v {
        "8" | "9" | "10" | "11" | "12" | "13" | "14" | "15" => v.parse().ok(),
        _ => None,
    }
}

fn clamp_bits(b: u8) -> u8 {
    b.clamp(8, 15)
}

impl DeflateParams {
    /// The header value a server sends to accept with these parameters.
    ///
    /// `server_max_window_bits` is always echoed when the offer had it (RFC 7692 7.1.2.1);
    /// the caller passes `offered_server_bits` for that.
    fn response(&self, offered_server_bits: bool, offered_client_bits: bool) -> String {
        let mut s = String::from(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if offered_server_bits || self.server_max_window_bits < 15 {
            s.push_str(&format!("; server_max_window_bits={}", self.server_max_window_bits));
        }
        if offered_client_bits && self.client_max_window_bits < 15 {
            s.push_str(&format!("; client_max_window_bits={}", self.client_max_window_bits));
        }
        s
    }
}

/// The parameters of one permessage-deflate element, checked for known names, no
/// repeats and well-formed values; what they may be depends on the side reading them.
#[derive(Default)]
struct RawParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_bits: Option<u8>,
    /// Outer `None`: absent; `Some(None)`: present without a value.
    client_bits: Option<Option<u8>>,
}

impl RawParams {
    fn parse(ext: &Extension) -> Result<RawParams, String> {
        let mut p = RawParams::default();
        let mut seen = [false; 4];
        for (k, v) in &ext.params {
            let slot = match k.as_str() {
                "server_no_context_takeover" => 0,
                "client_no_context_takeover" => 1,
                "server_max_window_bits" => 2,
                "client_max_window_bits" => 3,
                _ => return Err(format!("unknown parameter {k:?}")),
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(format!("parameter {k:?} repeated"));
            }
            let bits = |v: &str| parse_bits(v).ok_or_else(|| format!("{k}={v:?} is not 8..15"));
            match (slot, v.as_deref()) {
                (0, None) => p.server_no_context_takeover = true,
                (1, None) => p.client_no_context_takeover = true,
                (2, Some(v)) => p.server_bits = Some(bits(v)?),
                (3, None) => p.client_bits = Some(None),
                (3, Some(v)) => p.client_bits = Some(Some(bits(v)?)),
                (2, None) => return Err(format!("{k} needs a value")),
                _ => return Err(format!("{k} takes no value")),
            }
        }
        Ok(p)
    }
}

impl DeflateConfig {
    /// Server side: picks the first offer it can honour and returns the agreed parameters
    /// and the `Sec-WebSocket-Extensions` response value. Offers with unknown, repeated or
    /// malformed parameters are declined (RFC 7692 5), not treated as handshake failures;
    /// `None` means compression stays off.
    ///
    /// ```
    /// use actix_meta_websocket::protocol::{parse_extensions, DeflateConfig};
    /// let offers = parse_extensions(
    ///     "permessage-deflate; foo, permessage-deflate; server_max_window_bits=10",
    /// ).unwrap();
    /// let (params, answer) = DeflateConfig::default().negotiate_server(&offers).unwrap();
    /// assert_eq!(params.server_max_window_bits, 10);
    /// assert_eq!(answer, "permessage-deflate; server_max_window_bits=10");
    /// ```
    pub fn negotiate_server(&self, offers: &[Extension]) -> Option<(DeflateParams, String)> {
        offers
            .iter()
            .filter(|o| o.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
            .find_map(|o| self.accept_offer(o))
    }

    fn accept_offer(&self, offer: &Extension) -> Option<(DeflateParams, String)> {
        let offered = RawParams::parse(offer).ok()?;
        let own_server = clamp_bits(self.server_max_window_bits);
        let own_client = clamp_bits(self.client_max_window_bits);
        let params = DeflateParams {
            server_no_context_takeover: offered.server_no_context_takeover || self.server_no_context_takeover,
            // The client must honour this whether or not it offered it (RFC 7692 7.1.1.2).
            client_no_context_takeover: offered.client_no_context_takeover || self.client_no_context_takeover,
            server_max_window_bits: offered.server_bits.map_or(own_server, |b| b.min(own_server)),
            client_max_window_bits: match offered.client_bits {
                // Without the parameter in the offer the client may use a full window.
                None => 15,
                Some(None) => own_client,
                Some(Some(b)) => b.min(own_client),
            },
        };
        let answer = params.response(offered.server_bits.is_some(), offered.client_bits.is_some());
        Some((params, answer))
    }

    /// Client side: the `Sec-WebSocket-Extensions` offer.
    pub fn client_offer(&self) -> String {
        let mut s = String::from(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        let sb = clamp_bits(self.server_max_window_bits);
        if sb < 15 {
            s.push_str(&format!("; server_max_window_bits={sb}"));
        }
        let cb = clamp_bits(self.client_max_window_bits);
        if cb < 15 {
            s.push_str(&format!("; client_max_window_bits={cb}"));
        } else {
            s.push_str("; client_max_window_bits");
        }
        s
    }

    /// Client side: checks the server's answer against what [`client_offer`](Self::client_offer)
    /// offered. `Ok(None)`: the server declined compression.
    ///
    /// ```
    /// use actix_meta_websocket::protocol::{parse_extensions, DeflateConfig};
    /// let cfg = DeflateConfig::default();
    /// let ok = parse_extensions("permessage-deflate; client_max_window_bits=9").unwrap();
    /// assert_eq!(cfg.accept_client(&ok).unwrap().unwrap().client_max_window_bits, 9);
    /// let bad = parse_extensions("permessage-deflate; mystery").unwrap();
    /// assert!(cfg.accept_client(&bad).is_err());
    /// ```
    pub fn accept_client(
        &self,
        response: &[Extension],
    ) -> Result<Option<DeflateParams>, DeflateNegotiationError> {
        let err = |m: String| Err(DeflateNegotiationError(m));
        let mut found = None;
        for ext in response {
            if !ext.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
                return err(format!("extension {:?} was not offered", ext.name));
            }
            if found.replace(ext).is_some() {
                return err("permessage-deflate answered twice".into());
            }
        }
        let Some(ext) = found else { return Ok(None) };
        let answered = RawParams::parse(ext).map_err(DeflateNegotiationError)?;
        let offered_sb = clamp_bits(self.server_max_window_bits);
        let offered_cb = clamp_bits(self.client_max_window_bits);
        let mut p = DeflateParams {
            server_no_context_takeover: answered.server_no_context_takeover,
            client_no_context_takeover: answered.client_no_context_takeover
                || self.client_no_context_takeover,
            ..DeflateParams::default()
        };
        if let Some(b) = answered.server_bits {
            if b > offered_sb {
                return err(format!("server_max_window_bits={b} exceeds the {offered_sb} offered"));
            }
            p.server_max_window_bits = b;
        }
        match answered.client_bits {
            None => {}
            Some(None) => return err("client_max_window_bits needs a value 8..15".into()),
            Some(Some(b)) if b > offered_cb => {
                return err(format!("client_max_window_bits={b} exceeds the {offered_cb} offered"));
            }
            Some(Some(b)) => p.client_max_window_bits = b,
        }
        if self.server_no_context_takeover && !p.server_no_context_takeover {
            return err("server_no_context_takeover was requested but not granted".into());
        }
        if offered_sb < 15 && p.server_max_window_bits > offered_sb {
            return err("server_max_window_bits was requested but not granted".into());
        }
        Ok(Some(p))
    }
}

impl DeflateParams {
    fn own(&self, role: Role) -> (u8, bool) {
        match role {
            Role::Server => (self.server_max_window_bits, self.server_no_context_takeover),
            Role::Client => (self.client_max_window_bits, self.client_no_context_takeover),
        }
    }
    fn peer(&self, role: Role) -> (u8, bool) {
        self.own(role.peer())
    }
}

/// zlib cannot make raw deflate with an 8-bit window; a 9-bit zlib stream never reaches
/// further back than 250 bytes (window minus lookahead), which an 8-bit inflater accepts,
/// and inflating with a larger window than the peer's is always safe.
fn zlib_bits(bits: u8) -> u8 {
    bits.clamp(9, 15)
}

/// Compresses outgoing messages for one connection.
///
/// ```
/// use actix_meta_websocket::protocol::{Compressor, Decompressor, DeflateParams, Role};
/// use bytes::BytesMut;
/// let params = DeflateParams::default();
/// let mut server = Compressor::new(&params, Role::Server, 6);
/// let mut client = Decompressor::new(&params, Role::Client);
/// let json = br#"{"sym":"ABC","px":101.5,"qty":300}"#.repeat(20);
/// let mut wire = BytesMut::new();
/// server.compress(&json, &mut wire).unwrap();
/// assert!(wire.len() < json.len() / 4);
/// let mut back = Vec::new();
/// client.inflate(&wire, &mut back, 1 << 20).unwrap();
/// client.finish(&mut back, 1 << 20).unwrap();
/// assert_eq!(back, json);
/// ```
pub struct Compressor {
    inner: Compress,
    reset_each: bool,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor").field("reset_each", &self.reset_each).finish()
    }
}

/// Compression failed inside zlib (not caused by peer input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deflate failed: {0}")]
pub struct CompressError(pub String);

impl Compressor {
    /// A compressor for `role`'s side of the negotiated parameters.
    pub fn new(params: &DeflateParams, role: Role, level: u32) -> Self {
        let (bits, reset_each) = params.own(role);
        Compressor {
            inner: Compress::new_with_window_bits(Compression::new(level.min(9)), false, zlib_bits(bits)),
            reset_each,
        }
    }

    /// Appends the compressed form of one whole message to `out`, without the
    /// `00 00 ff ff` tail (RFC 7692 7.2.1).
    pub fn compress(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), CompressError> {
        let in_start = self.inner.total_in();
        loop {
            let consumed = (self.inner.total_in() - in_start) as usize;
            let space = (input.len() - consumed) / 2 + 64;
            let at = out.len();
            out.resize(at + space, 0);
            let out_start = self.inner.total_out();
            let r = self.inner.compress(&input[consumed..], &mut out[at..], FlushCompress::Sync);
            let produced = (self.inner.total_out() - out_start) as usize;
            out.truncate(at + produced);
            r.map_err(|e| CompressError(e.to_string()))?;
            let done = (self.inner.total_in() - in_start) as usize == input.len();
            if done && produced < space {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if self.reset_each {
            self.inner.reset();
        }
        Ok(())
    }
}

/// Inflates incoming messages for one connection, never past a size limit.
///
/// ```
/// use actix_meta_websocket::protocol::{Decompressor, DeflateParams, ProtocolError, Role};
/// // RFC 7692 7.2.3.1: "Hello" compressed, without the 00 00 ff ff tail.
/// let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
/// let mut out = Vec::new();
/// d.inflate(&hello, &mut out, 1024).unwrap();
/// d.finish(&mut out, 1024).unwrap();
/// assert_eq!(out, b"Hello");
/// // The same with a 4-byte limit: refused while inflating, not after.
/// let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
/// let r = d.inflate(&hello, &mut Vec::new(), 4).and_then(|()| d.finish(&mut Vec::new(), 4));
/// assert!(matches!(r, Err(ProtocolError::MessageTooLarge { .. })));
/// ```
pub struct Decompressor {
    inner: Decompress,
    reset_each: bool,
    /// The peer ended a stream with BFINAL: the rest of this message is padding.
    stream_ended: bool,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor").field("reset_each", &self.reset_each).finish()
    }
}

impl Decompressor {
    /// A decompressor for the peer's side of the negotiated parameters.
    pub fn new(params: &DeflateParams, role: Role) -> Self {
        let (bits, reset_each) = params.peer(role);
        Decompressor {
            inner: Decompress::new_with_window_bits(false, zlib_bits(bits)),
            reset_each,
            stream_ended: false,
        }
    }

    /// Inflates the next piece of a compressed message into `out`. Output never grows
    /// past `limit` bytes and its allocation never past `limit + 1`: the message is
    /// refused as soon as it would.
    pub fn inflate(&mut self, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), ProtocolError> {
        if self.stream_ended {
            return Ok(());
        }
        let in_start = self.inner.total_in();
        loop {
            let consumed = (self.inner.total_in() - in_start) as usize;
            if out.len() == out.capacity() {
                let room = (limit + 1).saturating_sub(out.len());
                if room == 0 {
                    return Err(ProtocolError::MessageTooLarge { size: out.len() as u64, limit });
                }
                // Geometric growth, capped so the allocation never exceeds the limit.
                let want =
                    ((input.len() - consumed).saturating_mul(4)).max(out.capacity()).clamp(1024, 4 << 20);
                out.reserve_exact(want.min(room));
            }
            let space = out.capacity() - out.len();
            let out_start = self.inner.total_out();
            let r = self.inner.decompress_vec(&input[consumed..], out, FlushDecompress::Sync);
            let produced = (self.inner.total_out() - out_start) as usize;
            let status = r.map_err(|e| ProtocolError::Inflate(e.to_string()))?;
            if out.len() > limit {
                return Err(ProtocolError::MessageTooLarge { size: out.len() as u64, limit });
            }
            if status == Status::StreamEnd {
                self.stream_ended = true;
                return Ok(());
            }
            let done = (self.inner.total_in() - in_start) as usize == input.len();
            if done && produced < space {
                return Ok(());
            }
        }
    }

    /// Ends a message: feeds the `00 00 ff ff` tail the sender stripped, and resets the
    /// window when the peer does not take over context.
    pub fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), ProtocolError> {
        let r = self.inflate(&TAIL, out, limit);
        if self.reset_each || self.stream_ended {
            self.inner.reset(false);
            self.stream_ended = false;
        }
        r
    }

    /// Forgets the current stream state after a failed message.
    pub fn reset(&mut self) {
        self.inner.reset(false);
        self.stream_ended = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_extensions;

    fn server(cfg: &DeflateConfig, offer: &str) -> Option<(DeflateParams, String)> {
        cfg.negotiate_server(&parse_extensions(offer).unwrap())
    }

    #[test]
    fn server_accepts_defaults_and_declines_bad_offers() {
        let cfg = DeflateConfig::default();
        let (p, a) = server(&cfg, "permessage-deflate").unwrap();
        assert_eq!(p, DeflateParams::default());
        assert_eq!(a, "permessage-deflate");
        for bad in [
            "permessage-deflate; unknown",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(server(&cfg, bad), None, "{bad}");
        }
        // A bad offer followed by a good one: the good one wins.
        let (_, a) =
            server(&cfg, "permessage-deflate; bogus, permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(a, "permessage-deflate");
    }

    #[test]
    fn server_window_bits_and_context_takeover() {
        let cfg = DeflateConfig { client_max_window_bits: 10, ..DeflateConfig::default() };
        let (p, a) = server(
            &cfg,
            "permessage-deflate; server_no_context_takeover; client_max_window_bits; server_max_window_bits=8",
        )
        .unwrap();
        assert!(p.server_no_context_takeover);
        assert_eq!((p.server_max_window_bits, p.client_max_window_bits), (8, 10));
        assert_eq!(
            a,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8; client_max_window_bits=10"
        );
        // No client_max_window_bits in the offer: the server may not send it.
        let (p, a) = server(&cfg, "permessage-deflate").unwrap();
        assert_eq!(p.client_max_window_bits, 15);
        assert!(!a.contains("client_max_window_bits"));
        // The server insists on client_no_context_takeover even when not offered.
        let cfg = DeflateConfig { client_no_context_takeover: true, ..DeflateConfig::default() };
        let (p, a) = server(&cfg, "permessage-deflate").unwrap();
        assert!(p.client_no_context_takeover);
        assert_eq!(a, "permessage-deflate; client_no_context_takeover");
    }

    #[test]
    fn client_checks_answers() {
        let cfg = DeflateConfig { server_max_window_bits: 12, ..DeflateConfig::default() };
        assert_eq!(
            cfg.client_offer(),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits"
        );
        let acc = |s: &str| cfg.accept_client(&parse_extensions(s).unwrap());
        assert_eq!(acc("").unwrap(), None);
        let p = acc("permessage-deflate; server_max_window_bits=10; client_no_context_takeover")
            .unwrap()
            .unwrap();
        assert_eq!((p.server_max_window_bits, p.client_no_context_takeover), (10, true));
        for bad in [
            // A limit on the server's window that was asked for must be granted.
            "permessage-deflate",
            "permessage-deflate; server_max_window_bits=13",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; foo",
            "permessage-deflate, permessage-deflate",
            "x-other",
        ] {
            assert!(acc(bad).is_err(), "{bad}");
        }
    }

    fn pair(params: DeflateParams) -> (Compressor, Decompressor) {
        (Compressor::new(&params, Role::Client, 6), Decompressor::new(&params, Role::Server))
    }

    fn roundtrip(c: &mut Compressor, d: &mut Decompressor, msg: &[u8]) -> (usize, Vec<u8>) {
        let mut z = BytesMut::new();
        c.compress(msg, &mut z).unwrap();
        let mut out = Vec::new();
        d.inflate(&z, &mut out, 1 << 20).unwrap();
        d.finish(&mut out, 1 << 20).unwrap();
        (z.len(), out.to_vec())
    }

    #[test]
    fn rfc7692_hello_examples() {
        // 7.2.3.1: "Hello" compressed, one message.
        let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
        let mut out = Vec::new();
        d.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100).unwrap();
        d.finish(&mut out, 100).unwrap();
        assert_eq!(&out[..], b"Hello");
        // 7.2.3.2: the second "Hello" with a shared window.
        let mut out = Vec::new();
        d.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out, 100).unwrap();
        d.finish(&mut out, 100).unwrap();
        assert_eq!(&out[..], b"Hello");
        // 7.2.3.3: "Hello" in a stored (no compression) block.
        let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
        let mut out = Vec::new();
        d.inflate(&[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00], &mut out, 100)
            .unwrap();
        d.finish(&mut out, 100).unwrap();
        assert_eq!(&out[..], b"Hello");
        // 7.2.3.4: a block with BFINAL set.
        let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
        let mut out = Vec::new();
        d.inflate(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00], &mut out, 100).unwrap();
        d.finish(&mut out, 100).unwrap();
        assert_eq!(&out[..], b"Hello");
        // Our compressor produces the RFC's bytes for the first message and the shorter
        // form for the second when context is taken over.
        let mut c = Compressor::new(&DeflateParams::default(), Role::Server, 6);
        let mut z = BytesMut::new();
        c.compress(b"Hello", &mut z).unwrap();
        assert_eq!(&z[..], [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        let mut z = BytesMut::new();
        c.compress(b"Hello", &mut z).unwrap();
        assert_eq!(&z[..], [0xf2, 0x00, 0x11, 0x00, 0x00]);
    }

    #[test]
    fn context_takeover_shrinks_repeats_and_no_takeover_does_not() {
        let msg = b"{\"symbol\":\"ACME\",\"price\":101.25,\"volume\":300}".repeat(3);
        let (mut c, mut d) = pair(DeflateParams::default());
        let (first, _) = roundtrip(&mut c, &mut d, &msg);
        let (second, out) = roundtrip(&mut c, &mut d, &msg);
        assert_eq!(out, msg);
        assert!(second < first / 2, "{second} vs {first}");
        let p = DeflateParams { client_no_context_takeover: true, ..DeflateParams::default() };
        let (mut c, mut d) = pair(p);
        let (first, _) = roundtrip(&mut c, &mut d, &msg);
        let (second, out) = roundtrip(&mut c, &mut d, &msg);
        assert_eq!(out, msg);
        assert_eq!(first, second);
    }

    #[test]
    fn small_windows_round_trip() {
        for bits in 8..=15 {
            let p = DeflateParams {
                client_max_window_bits: bits,
                server_max_window_bits: bits,
                ..Default::default()
            };
            let (mut c, mut d) = pair(p);
            let msg: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8 ^ (i / 300) as u8).collect();
            for _ in 0..3 {
                assert_eq!(roundtrip(&mut c, &mut d, &msg).1, msg, "bits {bits}");
            }
        }
    }

    #[test]
    fn deflate_bomb_is_stopped_at_the_limit() {
        let (mut c, mut d) = pair(DeflateParams::default());
        let zeros = vec![0u8; 10 << 20];
        let mut z = BytesMut::new();
        c.compress(&zeros, &mut z).unwrap();
        assert!(z.len() < 20_000, "{}", z.len());
        let mut out = Vec::new();
        let e = d.inflate(&z, &mut out, 64 * 1024).unwrap_err();
        assert!(matches!(e, ProtocolError::MessageTooLarge { limit: 65536, .. }));
        assert!(out.capacity() <= 64 * 1024 + 1, "{}", out.capacity());
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
        let mut out = Vec::new();
        let e = d.inflate(&[0xff, 0xff, 0xff, 0xff], &mut out, 100).unwrap_err();
        assert!(matches!(e, ProtocolError::Inflate(_)));
        assert_eq!(e.close_code().0, 1007);
    }
}
