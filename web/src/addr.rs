//! Address syntax checks the panel applies before writing a row: domain names, local parts and
//! full addresses, trimmed and lower-cased as PostfixAdmin stores them. The syntax rules are the
//! shared `account::addr` ones (the MTA uses the same); this module only adds the panel's
//! input handling. Pure functions, no IO.

/// A mail domain (see `account::addr::is_valid_domain`).
pub fn is_valid_domain(d: &str) -> bool {
    account::addr::is_valid_domain(d)
}

/// A dot-atom local part (see `account::addr::is_valid_local_part`).
pub fn is_valid_local_part(l: &str) -> bool {
    account::addr::is_valid_local_part(l)
}

/// `local@domain` with both parts valid: the parts, or `None`.
pub fn split_address(a: &str) -> Option<(&str, &str)> {
    let (local, domain) = account::addr::split(a)?;
    (is_valid_local_part(local) && is_valid_domain(domain)).then_some((local, domain))
}

/// Trim and lower-case an identifier the way PostfixAdmin does (`strtolower`).
pub fn normalize(s: &str) -> String {
    account::addr::normalize(s.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        for ok in [
            "example.com",
            "a.b.c.example",
            "xn--bcher-kva.example",
            "x1-2.io",
        ] {
            assert!(is_valid_domain(ok), "{ok}");
        }
        let long = format!("{}.com", "a".repeat(64));
        for bad in [
            "", "com", "-a.com", "a-.com", "a..com", "a.com.", "a_b.com", "1.2.3.4", &long,
        ] {
            assert!(!is_valid_domain(bad), "{bad}");
        }
    }

    #[test]
    fn local_parts() {
        for ok in ["john", "john.doe", "a+tag", "o'brien", &"a".repeat(64)] {
            assert!(is_valid_local_part(ok), "{ok}");
        }
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "a b",
            "a@b",
            "a\"b",
            &"a".repeat(65),
        ] {
            assert!(!is_valid_local_part(bad), "{bad}");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(split_address("a@b.cd"), Some(("a", "b.cd")));
        assert_eq!(split_address("a@b"), None);
        assert_eq!(split_address("ab.cd"), None);
    }
}
