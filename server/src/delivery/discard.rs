//! discard(8): reports every recipient delivered without delivering anything. The nexthop
//! (`discard:some text`) is the reason shown in the log. No IO. Entry point: `deliver`.

use super::{Outcome, Request};
use crate::dsn::Status;

pub fn deliver(req: &Request) -> Vec<Outcome> {
    let text = if req.nexthop.trim().is_empty() {
        "discarded".to_string()
    } else {
        req.nexthop.trim().to_string()
    };
    req.recipients
        .iter()
        .map(|_| Outcome::local(Status::new(250, "2.0.0", text.clone()), "none"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::testkit::request;

    #[test]
    fn discards_everything() {
        let out = deliver(&request("", &["a@b", "c@d"]));
        assert_eq!(out.len(), 2);
        assert!(
            out.iter().all(|o| o.status.is_success()
                && o.status.text == "discarded"
                && o.relay == "none")
        );
        let out = deliver(&request("spam trap", &["a@b"]));
        assert_eq!(out[0].status.text, "spam trap");
    }
}
