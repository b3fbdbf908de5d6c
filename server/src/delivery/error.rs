//! error(8) and retry(8): fail every recipient with the nexthop as the reason
//! (`error:5.1.1 mailbox moved`). error bounces (5.0.0 unless the text starts with a 5.x.y code);
//! retry defers (4.0.0 unless it starts with a 4.x.y code). No IO. Entry point: `deliver`.

use super::{Outcome, Request};
use crate::dsn::Status;

/// `d.d.d` at the start of `text` with the expected class, and the rest.
fn split_dsn(text: &str, class: char) -> Option<(&str, &str)> {
    let (code, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut parts = code.split('.');
    let ok = parts
        .next()
        .is_some_and(|c| c.len() == 1 && c.starts_with(class))
        && parts.next().is_some_and(|p| {
            !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit())
        })
        && parts.next().is_some_and(|p| {
            !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit())
        })
        && parts.next().is_none();
    ok.then(|| (code, rest.trim()))
}

pub fn deliver(req: &Request, retry: bool) -> Vec<Outcome> {
    let (class, code, default_dsn) = if retry {
        ('4', 450, "4.0.0")
    } else {
        ('5', 550, "5.0.0")
    };
    let raw = req.nexthop.trim();
    let (dsn, text) = split_dsn(raw, class).unwrap_or((default_dsn, raw));
    let text = if text.is_empty() {
        "mail delivery failed".to_string()
    } else {
        text.to_string()
    };
    let status = Status::new(code, dsn, text);
    req.recipients
        .iter()
        .map(|_| Outcome::local(status.clone(), "none"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Disposition;
    use crate::delivery::testkit::request;

    #[test]
    fn error_bounces_and_retry_defers() {
        let out = deliver(&request("5.1.1 mailbox moved", &["a@b", "c@d"]), false);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].disposition(), Disposition::Bounced);
        assert_eq!(
            (out[0].status.dsn.as_str(), out[0].status.text.as_str()),
            ("5.1.1", "mailbox moved")
        );
        let out = deliver(&request("no mail here", &["a@b"]), false);
        assert_eq!(
            (out[0].status.dsn.as_str(), out[0].status.text.as_str()),
            ("5.0.0", "no mail here")
        );
        let out = deliver(&request("4.3.2 try later", &["a@b"]), true);
        assert_eq!(out[0].disposition(), Disposition::Deferred);
        assert_eq!(out[0].status.dsn, "4.3.2");
        // A 4.x.y text given to error(8) is not taken as its code.
        let out = deliver(&request("4.3.2 odd", &["a@b"]), false);
        assert_eq!(
            (out[0].status.dsn.as_str(), out[0].status.text.as_str()),
            ("5.0.0", "4.3.2 odd")
        );
        let out = deliver(&request("", &["a@b"]), false);
        assert_eq!(out[0].status.text, "mail delivery failed");
    }
}
