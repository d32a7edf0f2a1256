//! A parser for `Sec-WebSocket-Extensions` (RFC 6455 9.1): several offers, parameters,
//! quoted values, several header lines.

use std::fmt;

/// One extension element: a name and its parameters, in order.
///
/// ```
/// use actix_meta_websocket::protocol::{parse_extensions, Extension, ExtensionParseError};
/// let offers: Vec<Extension> = parse_extensions(r#"permessage-deflate; client_max_window_bits="10", x-custom"#).unwrap();
/// assert_eq!(offers[0].params, [("client_max_window_bits".to_string(), Some("10".to_string()))]);
/// assert_eq!(offers[1].to_string(), "x-custom");
/// let bad: ExtensionParseError = parse_extensions("permessage-deflate;;").unwrap_err();
/// assert_eq!(bad.at, 19); // the byte where the grammar broke
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Parameters with their value (unquoted), or `None` for a bare parameter.
    pub params: Vec<(String, Option<String>)>,
}

/// A header value that does not follow the RFC 6455 9.1 grammar (see [`Extension`]'s
/// example).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Sec-WebSocket-Extensions at byte {at}: {what}")]
pub struct ExtensionParseError {
    /// Byte offset in the header value.
    pub at: usize,
    /// What was expected.
    pub what: &'static str,
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for (k, v) in &self.params {
            match v {
                Some(v) => write!(f, "; {k}={v}")?,
                None => write!(f, "; {k}")?,
            }
        }
        Ok(())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        while matches!(self.s.get(self.at), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }
    fn err(&self, what: &'static str) -> ExtensionParseError {
        ExtensionParseError { at: self.at, what }
    }
    fn token(&mut self) -> Result<String, ExtensionParseError> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        if start == self.at {
            return Err(self.err("a token"));
        }
        // Only tchars (ASCII) were consumed.
        Ok(String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }
    fn quoted(&mut self) -> Result<String, ExtensionParseError> {
        self.at += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err("a closing quote")),
                Some(b'"') => {
                    self.at += 1;
                    break;
                }
                Some(b'\\') => {
                    self.at += 1;
                    let Some(c) = self.peek() else { return Err(self.err("an escaped character")) };
                    out.push(c);
                    self.at += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
        // RFC 6455 9.1: a quoted value must itself be a token once unquoted.
        if out.is_empty() || !out.iter().all(|&b| is_tchar(b)) {
            return Err(self.err("a token inside the quotes"));
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// Parses one header value into its extension elements.
///
/// ```
/// use actix_meta_websocket::protocol::parse_extensions;
/// let exts = parse_extensions(
///     r#"permessage-deflate; client_max_window_bits; server_max_window_bits="10", x-foo"#,
/// ).unwrap();
/// assert_eq!(exts.len(), 2);
/// assert_eq!(exts[0].name, "permessage-deflate");
/// assert_eq!(exts[0].params[0], ("client_max_window_bits".into(), None));
/// assert_eq!(exts[0].params[1], ("server_max_window_bits".into(), Some("10".into())));
/// assert_eq!(exts[1].name, "x-foo");
/// ```
pub fn parse_extensions(value: &str) -> Result<Vec<Extension>, ExtensionParseError> {
    let mut c = Cursor { s: value.as_bytes(), at: 0 };
    let mut out = Vec::new();
    loop {
        c.skip_ws();
        if c.peek().is_none() {
            break;
        }
        // Empty list elements are allowed by the #rule.
        if c.eat(b',') {
            continue;
        }
        let name = c.token()?;
        let params = c.params()?;
        out.push(Extension { name, params });
    }
    Ok(out)
}

impl Cursor<'_> {
    /// Consumes `b` if it is next.
    fn eat(&mut self, b: u8) -> bool {
        let next = self.peek() == Some(b);
        if next {
            self.at += 1;
        }
        next
    }

    /// `; key[=value]` parameters up to the end of this element (its `,` is consumed).
    fn params(&mut self) -> Result<Vec<(String, Option<String>)>, ExtensionParseError> {
        let mut params = Vec::new();
        loop {
            self.skip_ws();
            if self.peek().is_none() || self.eat(b',') {
                return Ok(params);
            }
            if !self.eat(b';') {
                return Err(self.err("';' or ','"));
            }
            self.skip_ws();
            let key = self.token()?;
            self.skip_ws();
            let val = if self.eat(b'=') {
                self.skip_ws();
                Some(if self.peek() == Some(b'"') { self.quoted()? } else { self.token()? })
            } else {
                None
            };
            params.push((key, val));
        }
    }
}

/// Parses every `Sec-WebSocket-Extensions` line of a request or response, in order.
///
/// ```
/// use actix_meta_websocket::protocol::parse_extension_headers;
/// let offers = parse_extension_headers([
///     "permessage-deflate; client_max_window_bits, permessage-deflate",
/// ]).unwrap();
/// assert_eq!(offers.len(), 2);
/// assert_eq!(offers[0].name, "permessage-deflate");
/// assert!(parse_extension_headers(["permessage-deflate; ="]).is_err());
/// ```
pub fn parse_extension_headers<'a, I>(values: I) -> Result<Vec<Extension>, ExtensionParseError>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut out = Vec::new();
    for v in values {
        out.extend(parse_extensions(v)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_offers_and_forms() {
        let e = parse_extensions(
            "permessage-deflate;client_max_window_bits=10 , permessage-deflate ;  server_no_context_takeover,permessage-deflate",
        )
        .unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].params, vec![("client_max_window_bits".into(), Some("10".into()))]);
        assert_eq!(e[1].params, vec![("server_no_context_takeover".into(), None)]);
        assert!(e[2].params.is_empty());
    }

    #[test]
    fn quoted_values_and_escapes() {
        let e = parse_extensions(r#"foo; a="1\0"; b = "x""#).unwrap();
        assert_eq!(e[0].params, vec![("a".into(), Some("10".into())), ("b".into(), Some("x".into()))]);
    }

    #[test]
    fn empty_and_blank() {
        assert_eq!(parse_extensions("").unwrap(), vec![]);
        assert_eq!(parse_extensions(" , ,").unwrap(), vec![]);
    }

    #[test]
    fn malformed() {
        for bad in [
            "foo;",
            "foo; =1",
            "foo bar",
            "foo; a=\"unterminated",
            "foo; a=\"\"",
            "foo; a=\"b c\"",
            ";x",
            "foo; a=",
            "f\u{e9}",
        ] {
            assert!(parse_extensions(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn display_round_trips() {
        let s = "permessage-deflate; client_max_window_bits; server_max_window_bits=10";
        let e = parse_extensions(s).unwrap();
        assert_eq!(e[0].to_string(), s);
    }
}
