//! permessage-deflate parameters (RFC 7692): what this endpoint asks for or agrees to,
//! and the negotiation for both roles.

use super::super::{Extension, Role};

/// The extension token.
///
/// See [`DeflateParams`]'s example.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// Where a connection's zlib streams live between messages.
///
/// | | between messages, per connection | per worker thread |
/// |---|---|---|
/// | `Pooled` | the window shared with the peer, 2^bits bytes per direction that takes context over; nothing for a direction without | a few zlib streams, lent for one message at a time |
/// | `Dedicated` | a zlib stream per direction: about 240 KiB allocated to compress, 40 KiB to inflate | nothing |
///
/// `Pooled` costs a little CPU when many connections interleave on one thread (the
/// lent stream is reset and primed with the connection's window); `Dedicated` suits a
/// few busy connections that take context over with large windows.
///
/// ```
/// use actix_meta_websocket::protocol::{DeflateConfig, DeflateMemory};
/// let few_busy_peers = DeflateConfig { memory: DeflateMemory::Dedicated, ..DeflateConfig::default() };
/// assert_eq!(DeflateConfig::default().memory, DeflateMemory::Pooled);
/// # let _ = few_busy_peers;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeflateMemory {
    /// zlib streams are the thread's, lent for one message; the default.
    #[default]
    Pooled,
    /// Each connection keeps its own zlib streams for its whole life.
    Dedicated,
}

/// What this endpoint asks for or agrees to when permessage-deflate is enabled.
///
/// The defaults suit a server with many browsers: 4 KiB windows both ways (answered as
/// `server_max_window_bits=12`, and `client_max_window_bits=12` when the client offers
/// it), context takeover kept, and zlib streams lent per message from the thread's pool,
/// so an idle connection holds 8 KiB of compression state. [`DeflateConfig::shared`]
/// holds none for outgoing messages and compresses a broadcast once for all its members.
///
/// ```
/// use actix_meta_websocket::protocol::DeflateConfig;
/// let cfg = DeflateConfig { client_no_context_takeover: true, ..DeflateConfig::default() };
/// assert_eq!(
///     cfg.client_offer(),
///     "permessage-deflate; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=12"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Ask (client) or insist (server) that the server resets its compressor after every
    /// message. On a server this is the shared-compressor mode: nothing is kept per
    /// connection for outgoing messages, and a broadcast is compressed once.
    pub server_no_context_takeover: bool,
    /// Ask (client) or insist (server) that the client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// Largest server window, 8..=15 (default 12, 4 KiB; 15 = 32 KiB). A server answers
    /// with it even when the client did not ask (RFC 7692 7.1.2.1).
    pub server_max_window_bits: u8,
    /// Largest client window, 8..=15 (default 12). A server can only limit a client that
    /// offered `client_max_window_bits`, as browsers do; otherwise the client's window is 15.
    pub client_max_window_bits: u8,
    /// zlib level 0..=9 for outgoing messages (default 6).
    pub level: u32,
    /// Outgoing messages shorter than this many bytes are sent uncompressed (default 128).
    pub threshold: usize,
    /// Where zlib streams live between messages (default [`DeflateMemory::Pooled`]).
    pub memory: DeflateMemory,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 12,
            client_max_window_bits: 12,
            level: 6,
            threshold: 128,
            memory: DeflateMemory::Pooled,
        }
    }
}

impl DeflateConfig {
    /// The shared-compressor mode: the defaults with `server_no_context_takeover`, so a
    /// server keeps no compression state per connection for what it sends, and a
    /// [`PreparedMessage`](crate::PreparedMessage) is compressed once for every
    /// connection that agreed on the same parameters.
    ///
    /// ```
    /// use actix_meta_websocket::protocol::{parse_extensions, DeflateConfig};
    /// let offer = parse_extensions("permessage-deflate; client_max_window_bits").unwrap();
    /// let (params, answer) = DeflateConfig::shared().negotiate_server(&offer).unwrap();
    /// assert!(params.server_no_context_takeover);
    /// assert_eq!(
    ///     answer,
    ///     "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; client_max_window_bits=12"
    /// );
    /// ```
    pub fn shared() -> Self {
        DeflateConfig { server_no_context_takeover: true, ..DeflateConfig::default() }
    }
}

/// The parameters both ends agreed on.
///
/// ```
/// use actix_meta_websocket::protocol::{parse_extensions, DeflateConfig, DeflateParams, PERMESSAGE_DEFLATE};
/// // A browser's offer, as a server reads it.
/// let offers = parse_extensions("permessage-deflate; client_max_window_bits").unwrap();
/// assert_eq!(offers[0].name, PERMESSAGE_DEFLATE);
/// let (agreed, answer): (DeflateParams, String) = DeflateConfig::default().negotiate_server(&offers).unwrap();
/// assert!(answer.starts_with(PERMESSAGE_DEFLATE));
/// assert_eq!(agreed.server_max_window_bits, 12); // the config's default: a 4 KiB window
/// assert!(answer.contains("server_max_window_bits=12"));
/// ```
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

/// Why a server's permessage-deflate answer cannot be accepted by the client
/// ([`DeflateConfig::accept_client`]'s example meets one).
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
    /// A server that accepts without echoing the `server_max_window_bits` we asked for
    /// (gorilla/websocket does) is taken to use a full window: inflating that costs
    /// memory, not correctness, and failing would leave such servers unreachable. Our own
    /// window stays within `client_max_window_bits` whatever the server permits (Autobahn's
    /// 13.4 and 13.6 permit 15 to a client that offered less).
    ///
    /// ```
    /// use actix_meta_websocket::protocol::{parse_extensions, DeflateConfig, DeflateNegotiationError};
    /// let cfg = DeflateConfig::default();
    /// let ok = parse_extensions("permessage-deflate; server_max_window_bits=12; client_max_window_bits=9").unwrap();
    /// assert_eq!(cfg.accept_client(&ok).unwrap().unwrap().client_max_window_bits, 9);
    /// let gorilla = parse_extensions(
    ///     "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    /// ).unwrap();
    /// assert_eq!(cfg.accept_client(&gorilla).unwrap().unwrap().server_max_window_bits, 15);
    /// let bad = parse_extensions("permessage-deflate; mystery").unwrap();
    /// let refused: DeflateNegotiationError = cfg.accept_client(&bad).unwrap_err();
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
        // Our own window: never above what we offered, whatever the server allows (a
        // smaller window than permitted is always valid, and the offer is our memory bound).
        p.client_max_window_bits = match answered.client_bits {
            None => offered_cb,
            Some(None) => return err("client_max_window_bits needs a value 8..15".into()),
            Some(Some(b)) => b.min(offered_cb),
        };
        if self.server_no_context_takeover && !p.server_no_context_takeover {
            return err("server_no_context_takeover was requested but not granted".into());
        }
        Ok(Some(p))
    }
}

impl DeflateParams {
    /// `role`'s own window bits and whether it resets after each message.
    pub(super) fn own(&self, role: Role) -> (u8, bool) {
        match role {
            Role::Server => (self.server_max_window_bits, self.server_no_context_takeover),
            Role::Client => (self.client_max_window_bits, self.client_no_context_takeover),
        }
    }
    /// The same for `role`'s peer.
    pub(super) fn peer(&self, role: Role) -> (u8, bool) {
        self.own(role.peer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_extensions;

    fn server(cfg: &DeflateConfig, offer: &str) -> Option<(DeflateParams, String)> {
        cfg.negotiate_server(&parse_extensions(offer).unwrap())
    }

    /// RFC 7692's own defaults: full windows.
    fn full() -> DeflateConfig {
        DeflateConfig { server_max_window_bits: 15, client_max_window_bits: 15, ..DeflateConfig::default() }
    }

    #[test]
    fn defaults_answer_small_windows_unasked() {
        let cfg = DeflateConfig::default();
        // What browsers and Node's ws offer.
        let (p, a) = server(&cfg, "permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!((p.server_max_window_bits, p.client_max_window_bits), (12, 12));
        assert!(!p.server_no_context_takeover && !p.client_no_context_takeover);
        assert_eq!(a, "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12");
        // A client that cannot be limited keeps its full window; ours is still 12.
        let (p, a) = server(&cfg, "permessage-deflate").unwrap();
        assert_eq!((p.server_max_window_bits, p.client_max_window_bits), (12, 15));
        assert_eq!(a, "permessage-deflate; server_max_window_bits=12");
        // A client asking for less gets less.
        let (p, _) = server(&cfg, "permessage-deflate; server_max_window_bits=9").unwrap();
        assert_eq!(p.server_max_window_bits, 9);
        // The shared mode adds server_no_context_takeover.
        let (p, a) = server(&DeflateConfig::shared(), "permessage-deflate").unwrap();
        assert!(p.server_no_context_takeover);
        assert_eq!(a, "permessage-deflate; server_no_context_takeover; server_max_window_bits=12");
    }

    #[test]
    fn server_accepts_defaults_and_declines_bad_offers() {
        let cfg = full();
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
        let cfg = DeflateConfig { client_max_window_bits: 10, ..full() };
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
        let cfg = DeflateConfig { client_no_context_takeover: true, ..full() };
        let (p, a) = server(&cfg, "permessage-deflate").unwrap();
        assert!(p.client_no_context_takeover);
        assert_eq!(a, "permessage-deflate; client_no_context_takeover");
    }

    #[test]
    fn client_checks_answers() {
        let cfg = DeflateConfig { server_max_window_bits: 12, ..full() };
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
        // A limit on the server's window that was asked for and not echoed: a full window.
        assert_eq!(acc("permessage-deflate").unwrap().unwrap().server_max_window_bits, 15);
        // The server permitting a larger client window than offered: ours stays as offered.
        let p =
            acc("permessage-deflate; server_max_window_bits=12; client_max_window_bits=15").unwrap().unwrap();
        assert_eq!(p.client_max_window_bits, 15.min(cfg.client_max_window_bits));
        let small = DeflateConfig { client_max_window_bits: 10, ..cfg.clone() };
        let p = small
            .accept_client(
                &parse_extensions("permessage-deflate; server_max_window_bits=12; client_max_window_bits=15")
                    .unwrap(),
            )
            .unwrap()
            .unwrap();
        assert_eq!(p.client_max_window_bits, 10);
        for bad in [
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
}
