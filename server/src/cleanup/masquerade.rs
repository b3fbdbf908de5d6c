//! Address masquerading (`masquerade.c`): `user@host.sub.example.com` becomes
//! `user@example.com` when `example.com` is in `masquerade_domains`. Entries are tried in
//! order; the first that equals the domain or is a parent of it decides: a plain entry
//! rewrites to itself (an exact match leaves the address alone), a `!entry` stops
//! masquerading for that domain and its subdomains. Local parts in `masquerade_exceptions`
//! are never masqueraded. Pure: no lookups, no IO. Entry point: [`Masquerade::apply`].

/// `masquerade_domains` and `masquerade_exceptions`, lower-cased.
#[derive(Debug, Clone, Default)]
pub struct Masquerade {
    pub domains: Vec<String>,
    pub exceptions: Vec<String>,
}

impl Masquerade {
    pub fn new(domains: &[String], exceptions: &[String]) -> Masquerade {
        Masquerade {
            domains: domains
                .iter()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .filter(|d| !d.is_empty() && d != "!")
                .collect(),
            exceptions: exceptions.iter().map(|e| e.to_ascii_lowercase()).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// The masqueraded form of `addr` (unchanged when no entry applies).
    pub fn apply(&self, addr: &str) -> String {
        let Some((local, domain)) = addr.rsplit_once('@') else {
            return addr.to_string();
        };
        if self.domains.is_empty() || domain.is_empty() {
            return addr.to_string();
        }
        if self
            .exceptions
            .iter()
            .any(|e| e.eq_ignore_ascii_case(local))
        {
            return addr.to_string();
        }
        let dom = domain.trim_end_matches('.').to_ascii_lowercase();
        for entry in &self.domains {
            let (excluded, masq) = match entry.strip_prefix('!') {
                Some(m) => (true, m),
                None => (false, entry.as_str()),
            };
            if masq.is_empty() {
                continue;
            }
            if masq == dom {
                // Exact match: the address is already in (or excluded as) that domain.
                break;
            }
            if dom
                .strip_suffix(masq)
                .is_some_and(|head| head.ends_with('.'))
            {
                if excluded {
                    break;
                }
                return format!("{local}@{masq}");
            }
        }
        addr.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<String> {
        s.split([',', ' '])
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn masquerading_table() {
        // (masquerade_domains, masquerade_exceptions, address, expected) — digest tests 13, 14.
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "example.com",
                "",
                "kdent@mail.example.com",
                "kdent@example.com",
            ),
            (
                "example.com",
                "",
                "kdent@a.b.Example.COM",
                "kdent@example.com",
            ),
            ("example.com", "", "kdent@example.com", "kdent@example.com"),
            (
                "example.com",
                "",
                "kdent@notexample.com",
                "kdent@notexample.com",
            ),
            ("example.com", "", "kdent@other.org", "kdent@other.org"),
            ("example.com", "", "", ""),
            ("example.com", "", "unqualified", "unqualified"),
            // First matching entry wins: subdomains listed first keep their own level.
            (
                "acct.example.com hr.example.com example.com",
                "",
                "a@x.acct.example.com",
                "a@acct.example.com",
            ),
            (
                "acct.example.com hr.example.com example.com",
                "",
                "a@acct.example.com",
                "a@acct.example.com",
            ),
            (
                "acct.example.com hr.example.com example.com",
                "",
                "a@it.example.com",
                "a@example.com",
            ),
            // `!entry` excludes that domain and its subdomains.
            (
                "!it.example.com, example.com",
                "",
                "kdent@it.example.com",
                "kdent@it.example.com",
            ),
            (
                "!it.example.com, example.com",
                "",
                "kdent@pc.it.example.com",
                "kdent@pc.it.example.com",
            ),
            (
                "!it.example.com, example.com",
                "",
                "kdent@hr.example.com",
                "kdent@example.com",
            ),
            // masquerade_exceptions are local parts.
            (
                "example.com",
                "root, admin",
                "root@db.example.com",
                "root@db.example.com",
            ),
            (
                "example.com",
                "root, admin",
                "Admin@db.example.com",
                "Admin@db.example.com",
            ),
            (
                "example.com",
                "root, admin",
                "kim@db.example.com",
                "kim@example.com",
            ),
        ];
        for (domains, exceptions, addr, want) in cases {
            let m = Masquerade::new(&list(domains), &list(exceptions));
            assert_eq!(m.apply(addr), *want, "{domains} / {exceptions}: {addr}");
        }
    }
}
