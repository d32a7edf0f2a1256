//! URLs as logs, errors and `Debug` output show them: no credentials. Userinfo becomes
//! `***`, every query value `***` (a token rides there as often as in a header: keys stay,
//! so a reader still sees what was asked), and the fragment goes.
//!
//! Knows strings only; what a connection keeps for its target is not redacted.

/// `uri` (a URL, or a request's path and query) without credentials.
pub(crate) fn for_logs(uri: &str) -> String {
    let uri = uri.split('#').next().unwrap_or_default();
    let (base, query) = match uri.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (uri, None),
    };
    let mut out = userinfo(base);
    if let Some(query) = query {
        out.push('?');
        out.push_str(&query_values(query));
    }
    out
}

/// `url` with the userinfo of its authority, if any, as `***`.
pub(crate) fn userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(a, b)| (a, b));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let sep = if scheme.is_empty() { "" } else { "://" };
            format!("{scheme}{sep}***{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

fn query_values(query: &str) -> String {
    let hidden: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) => format!("{key}=***"),
            None if pair.is_empty() => String::new(),
            None => "***".to_owned(),
        })
        .collect();
    hidden.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_hidden_wherever_they_ride() {
        assert_eq!(for_logs("wss://host/ws/lobby?token=s3cret"), "wss://host/ws/lobby?token=***");
        assert_eq!(
            for_logs("wss://me:pw@host:8443/ws?a=1&b&=x#frag"),
            "wss://***@host:8443/ws?a=***&***&=***"
        );
        assert_eq!(for_logs("/ws?since=1:2&token=t"), "/ws?since=***&token=***");
        assert_eq!(for_logs("ws://host/ws"), "ws://host/ws");
        assert_eq!(for_logs("/ws?"), "/ws?");
        assert_eq!(userinfo("http://user:pw@proxy:3128"), "http://***@proxy:3128");
        assert_eq!(userinfo("user:pw@proxy:3128/x@y"), "***@proxy:3128/x@y");
        assert_eq!(userinfo("http://proxy:3128/a@b"), "http://proxy:3128/a@b");
    }
}
