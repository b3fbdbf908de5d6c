//! Mail address syntax shared by the MTA and the panel: domains, local parts, splitting, case.
//!
//! Pure functions on `&str`; no DNS, no IDNA conversion (a domain is accepted in A-label form
//! `xn--…` or as UTF-8, and is stored the way it was given), no quoted local parts.
//! Entry points: [`is_valid_domain`], [`is_valid_local_part`], [`split`], [`normalize`].

/// RFC 1035 §2.3.4 / RFC 5321 §4.5.3.1.2: a domain name is at most 253 octets in text form.
pub const MAX_DOMAIN_LEN: usize = 253;
/// RFC 1035 §2.3.4: a label is at most 63 octets.
pub const MAX_LABEL_LEN: usize = 63;
/// RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
pub const MAX_LOCAL_PART_LEN: usize = 64;

/// Whether `domain` is a fully qualified mail domain: dot-separated LDH labels (letters, digits,
/// hyphens, no hyphen at either end; UTF-8 letters and digits also allowed for IDNs), at least two
/// labels, no trailing dot, a top-level label that is not all digits (RFC 3696 §2), ≤ 253 octets,
/// each label ≤ 63 octets (counted as written).
pub fn is_valid_domain(domain: &str) -> bool {
    if domain.is_empty() || domain.len() > MAX_DOMAIN_LEN || !domain.contains('.') {
        return false;
    }
    let valid_labels = domain.split('.').all(is_valid_label);
    let tld_numeric = domain
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
    valid_labels && !tld_numeric
}

fn is_valid_label(label: &str) -> bool {
    if label.is_empty() || label.len() > MAX_LABEL_LEN {
        return false;
    }
    if label.starts_with('-') || label.ends_with('-') {
        return false;
    }
    label
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric()))
}

/// RFC 5322 §3.2.3 `atext`: the characters allowed in a dot-atom besides the dots.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// Whether `local` is an RFC 5321 `Dot-string` local part (§4.1.2): atoms of `atext` joined by
/// single dots, no dot at either end, 1..=64 octets (§4.5.3.1.1). Quoted strings and UTF-8 are
/// not accepted.
pub fn is_valid_local_part(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= MAX_LOCAL_PART_LEN
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
}

/// Splits `addr` at its last `@` into (local part, domain); `None` without an `@`.
/// The parts are returned as they are (a catch-all `@example.org` gives an empty local part);
/// validate them with [`is_valid_local_part`] and [`is_valid_domain`].
pub fn split(addr: &str) -> Option<(&str, &str)> {
    addr.rsplit_once('@')
}

/// The form addresses are stored and looked up in: lower case (PostfixAdmin lower-cases every
/// address it writes, Postfix folds lookup keys).
pub fn normalize(addr: &str) -> String {
    addr.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        let label63 = "a".repeat(63);
        let label64 = "a".repeat(64);
        // 4 labels of 63 + 3 dots = 255; trim to exactly 253 and 254
        let d253 = format!("{label63}.{label63}.{label63}.{}", "a".repeat(61));
        let d254 = format!("{label63}.{label63}.{label63}.{}", "a".repeat(62));
        assert_eq!(d253.len(), 253);
        assert_eq!(d254.len(), 254);
        let ok63 = format!("{label63}.org");
        let bad64 = format!("{label64}.org");
        let cases: &[(&str, bool)] = &[
            ("example.org", true),
            ("mail.example.co.uk", true),
            ("EXAMPLE.ORG", true),
            ("a-b.example", true),
            ("1example.org", true),
            ("123.example.org", true),
            ("xn--bcher-kva.example", true),
            ("bücher.example", true),
            ("例え.テスト", true),
            ("x.y", true),
            (&ok63, true),
            (&bad64, false),
            (&d253, true),
            (&d254, false),
            ("", false),
            ("localhost", false),
            ("ALL", false),
            (".example.org", false),
            ("example.org.", false),
            ("example..org", false),
            ("-example.org", false),
            ("example-.org", false),
            ("exa_mple.org", false),
            ("exa mple.org", false),
            ("example.org\n", false),
            ("user@example.org", false),
            ("1.2.3.4", false),
            ("[1.2.3.4]", false),
            ("example.123", false),
            ("bü!cher.example", false),
            ("a.b\u{00a0}c", false),
        ];
        for (d, want) in cases {
            assert_eq!(is_valid_domain(d), *want, "{d:?}");
        }
    }

    #[test]
    fn local_parts() {
        let l64 = "a".repeat(64);
        let l65 = "a".repeat(65);
        let cases: &[(&str, bool)] = &[
            ("john", true),
            ("John.Doe", true),
            ("john+tag", true),
            ("a", true),
            ("!#$%&'*+-/=?^_`{|}~", true),
            ("0", true),
            (&l64, true),
            (&l65, false),
            ("", false),
            (".john", false),
            ("john.", false),
            ("jo..hn", false),
            ("jo hn", false),
            ("\"john\"", false),
            ("jo(hn", false),
            ("jo,hn", false),
            ("jo@hn", false),
            ("jo\\hn", false),
            ("jöhn", false),
            ("john\r\n", false),
        ];
        for (l, want) in cases {
            assert_eq!(is_valid_local_part(l), *want, "{l:?}");
        }
    }

    #[test]
    fn splits_at_last_at() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("john@example.org", Some(("john", "example.org"))),
            ("@example.org", Some(("", "example.org"))),
            ("john@", Some(("john", ""))),
            ("a@b@example.org", Some(("a@b", "example.org"))),
            ("john", None),
            ("", None),
        ];
        for (a, want) in cases {
            assert_eq!(split(a), *want, "{a:?}");
        }
    }

    #[test]
    fn normalizes_to_lower_case() {
        let cases = [
            ("John.Doe@Example.ORG", "john.doe@example.org"),
            ("@EXAMPLE.org", "@example.org"),
            ("already@lower.case", "already@lower.case"),
            ("ÄRGER@BÜCHER.example", "ärger@bücher.example"),
            ("", ""),
        ];
        for (a, want) in cases {
            assert_eq!(normalize(a), want, "{a:?}");
        }
    }
}
