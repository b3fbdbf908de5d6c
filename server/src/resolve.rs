//! Address resolution (trivial-rewrite's resolve): recipient domain → address class
//! (local, virtual alias, virtual mailbox, relay, default) and recipient → route
//! (transport, nexthop, recipient), through the configured domain lists and transport_maps.
//! For the default class the sender picks the transport (`sender_dependent_default_transport_maps`)
//! and the relay host (`sender_dependent_relayhost_maps`): keys are the sender address (with and
//! without its extension), then `@domain`; the null sender is looked up as
//! `empty_address_default_transport_maps_lookup_key` / `empty_address_relayhost_maps_lookup_key`
//! (`<>`). A nexthop in the transport value beats either relay host; transport_maps beat all.
//! Decides nothing about delivery; a lookup failure is a temporary `Status`, never "not found".

/// Postfix's address classes (ADDRESS_CLASS_README), in trivial-rewrite's check order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    /// `mydestination`, `inet_interfaces`, `proxy_interfaces`.
    Local,
    /// `virtual_alias_domains`.
    VirtualAlias,
    /// `virtual_mailbox_domains`.
    VirtualMailbox,
    /// `relay_domains`.
    Relay,
    /// Everything else (`default_transport`); mail to it needs relay permission.
    Default,
}

/// Where one recipient goes: `transport:nexthop` plus the (possibly rewritten) address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub transport: String,
    pub nexthop: String,
    pub recipient: String,
    pub class: AddrClass,
}

use crate::config::Config;
use crate::maps::{DomainList, MapError, Maps, TableList};

/// The address-class tables and transport settings, opened once per configuration.
#[derive(Debug)]
pub struct Resolver {
    local: DomainList,
    virtual_alias: DomainList,
    virtual_mailbox: DomainList,
    relay: DomainList,
    transport_maps: TableList,
    local_transport: String,
    virtual_transport: String,
    relay_transport: String,
    default_transport: String,
    relayhost: String,
    sender_transport: TableList,
    sender_relayhost: TableList,
    empty_transport_key: String,
    empty_relayhost_key: String,
    delimiter: String,
    /// `relocated_maps`: old address → new contact ("User has moved to …").
    relocated_maps: TableList,
}

/// Splits `transport:nexthop`; a value without `:` is a transport with an empty nexthop.
pub fn split_transport(value: &str) -> (String, String) {
    match value.split_once(':') {
        Some((t, n)) => (t.trim().to_string(), n.trim().to_string()),
        None => (value.trim().to_string(), String::new()),
    }
}

/// A route through a content filter (`FILTER transport:destination`, `content_filter`): the
/// filter's transport, and its destination when it names one (else the resolved nexthop);
/// the recipient is kept.
pub fn filtered(route: Route, filter: &str) -> Route {
    let (transport, nexthop) = split_transport(filter);
    if transport.is_empty() {
        return route;
    }
    Route {
        transport,
        nexthop: if nexthop.is_empty() {
            route.nexthop
        } else {
            nexthop
        },
        ..route
    }
}

impl Resolver {
    pub fn new(cfg: &Config, maps: &Maps) -> Result<Resolver, MapError> {
        let dir = cfg.dir();
        Ok(Resolver {
            local: DomainList::new(maps, &cfg.get("mydestination"), false, dir)?,
            virtual_alias: DomainList::new(maps, &cfg.get("virtual_alias_domains"), false, dir)?,
            virtual_mailbox: DomainList::new(
                maps,
                &cfg.get("virtual_mailbox_domains"),
                false,
                dir,
            )?,
            relay: DomainList::new(maps, &cfg.get("relay_domains"), true, dir)?,
            transport_maps: maps.open_list(&cfg.get("transport_maps"))?,
            local_transport: cfg.get("local_transport"),
            virtual_transport: cfg.get("virtual_transport"),
            relay_transport: cfg.get("relay_transport"),
            default_transport: cfg.get("default_transport"),
            relayhost: cfg.get("relayhost"),
            sender_transport: maps
                .open_list(&cfg.get("sender_dependent_default_transport_maps"))?,
            sender_relayhost: maps.open_list(&cfg.get("sender_dependent_relayhost_maps"))?,
            empty_transport_key: cfg.get("empty_address_default_transport_maps_lookup_key"),
            empty_relayhost_key: cfg.get("empty_address_relayhost_maps_lookup_key"),
            delimiter: cfg.get("recipient_delimiter"),
            relocated_maps: maps.open_list(&cfg.get("relocated_maps"))?,
        })
    }

    /// trivial-rewrite's class check order (compat-specs §3.5.2).
    pub async fn class(&self, domain: &str) -> Result<AddrClass, MapError> {
        if self.local.contains(domain).await? {
            return Ok(AddrClass::Local);
        }
        if self.virtual_alias.contains(domain).await? {
            return Ok(AddrClass::VirtualAlias);
        }
        if self.virtual_mailbox.contains(domain).await? {
            return Ok(AddrClass::VirtualMailbox);
        }
        if self.relay.contains(domain).await? {
            return Ok(AddrClass::Relay);
        }
        Ok(AddrClass::Default)
    }

    /// A sender-dependent table's answer for `sender` (empty = `<>`, looked up as `empty_key`).
    /// `DUNNO` means "no answer" (Postfix 2.6+).
    async fn by_sender(
        &self,
        table: &TableList,
        sender: &str,
        empty_key: &str,
    ) -> Result<Option<String>, MapError> {
        if table.is_empty() {
            return Ok(None);
        }
        let found = if sender.is_empty() {
            table.lookup(empty_key).await?
        } else {
            table
                .find_addr(sender, &self.delimiter, false)
                .await?
                .map(|m| m.value)
        };
        Ok(found
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("dunno")))
    }

    /// Recipient of a message from `sender` (empty for `<>`) → route: the class default (for
    /// the default class: the sender-dependent transport and relay host first), then
    /// `transport_maps` (compat-specs §3.5.3).
    pub async fn route(&self, sender: &str, rcpt: &str) -> Result<Route, MapError> {
        let domain = rcpt
            .rsplit_once('@')
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default();
        let class = self.class(&domain).await?;
        if let Some(new) = self.relocated(rcpt, class).await? {
            // trivial-rewrite: a relocated recipient goes to the error transport.
            return Ok(Route {
                transport: "error".to_string(),
                nexthop: format!("5.1.6 User has moved to {new}"),
                recipient: rcpt.to_string(),
                class,
            });
        }
        let (default, default_nexthop) = match class {
            AddrClass::Local => (self.local_transport.as_str(), String::new()),
            AddrClass::VirtualAlias => (
                "error",
                "5.1.1 User unknown in virtual alias table".to_string(),
            ),
            AddrClass::VirtualMailbox => (self.virtual_transport.as_str(), String::new()),
            AddrClass::Relay => (self.relay_transport.as_str(), String::new()),
            AddrClass::Default => (self.default_transport.as_str(), self.relayhost.clone()),
        };
        let mut default = default.to_string();
        let mut default_nexthop = default_nexthop;
        if class == AddrClass::Default {
            let (tk, rk) = (&self.empty_transport_key, &self.empty_relayhost_key);
            if let Some(t) = self.by_sender(&self.sender_transport, sender, tk).await? {
                default = t;
            }
            if let Some(r) = self.by_sender(&self.sender_relayhost, sender, rk).await? {
                default_nexthop = r;
            }
        }
        let (mut transport, mut nexthop) = split_transport(&default);
        if nexthop.is_empty() {
            nexthop = default_nexthop;
        }
        if class != AddrClass::VirtualAlias {
            if let Some(v) = self.transport_lookup(rcpt, &domain).await? {
                let (t, n) = split_transport(&v);
                if !t.is_empty() {
                    transport = t;
                    nexthop = n;
                } else if !n.is_empty() {
                    nexthop = n;
                }
            }
        }
        if nexthop.is_empty() {
            nexthop = domain;
        }
        Ok(Route {
            transport,
            nexthop,
            recipient: rcpt.to_string(),
            class,
        })
    }

    /// The `relocated_maps` entry of `rcpt`: keys `user+ext@domain`, `user@domain`, then (local
    /// domains only) `user+ext`, `user`, then `@domain` (mail_addr_find, compat-specs §3.5.1).
    pub async fn relocated(
        &self,
        rcpt: &str,
        class: AddrClass,
    ) -> Result<Option<String>, MapError> {
        if self.relocated_maps.is_empty() || rcpt.is_empty() {
            return Ok(None);
        }
        let found = self
            .relocated_maps
            .find_addr(rcpt, &self.delimiter, class == AddrClass::Local)
            .await?;
        Ok(found
            .map(|m| m.value.trim().to_string())
            .filter(|v| !v.is_empty()))
    }

    async fn transport_lookup(&self, rcpt: &str, domain: &str) -> Result<Option<String>, MapError> {
        if self.transport_maps.is_empty() {
            return Ok(None);
        }
        let rcpt = rcpt.to_lowercase();
        let mut keys = vec![rcpt.clone()];
        if !self.delimiter.is_empty() {
            if let Some((local, d)) = rcpt.rsplit_once('@') {
                if let Some(i) = local
                    .find(|c| self.delimiter.contains(c))
                    .filter(|i| *i > 0)
                {
                    keys.push(format!("{}@{d}", &local[..i]));
                }
            }
        }
        keys.push(domain.to_string());
        let mut rest = domain;
        while let Some((_, parent)) = rest.split_once('.') {
            keys.push(format!(".{parent}"));
            rest = parent;
        }
        keys.push("*".to_string());
        for k in keys {
            if let Some(v) = self.transport_maps.lookup(&k).await? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn resolver(main: &str) -> Resolver {
        let (cfg, _) = Config::from_text(Path::new("/etc/postern"), main, "").expect("config");
        Resolver::new(&cfg, &Maps::new(&cfg)).expect("resolver")
    }

    #[tokio::test]
    async fn classes_and_routes() {
        let r = resolver(
            "myhostname = mx.example.com\nvirtual_mailbox_domains = inline:{ v.org=1 }\nvirtual_alias_domains = a.org\n\
             relay_domains = r.org\nvirtual_transport = lmtp:unix:private/dovecot-lmtp\n\
             transport_maps = inline:{ special@v.org=discard:, .r.org=relay:[gw]:25 }\n",
        );
        let cases = [
            (
                "u@mx.example.com",
                AddrClass::Local,
                "local",
                "mx.example.com",
            ),
            (
                "u@v.org",
                AddrClass::VirtualMailbox,
                "lmtp",
                "unix:private/dovecot-lmtp",
            ),
            (
                "special@v.org",
                AddrClass::VirtualMailbox,
                "discard",
                "v.org",
            ),
            (
                "u@a.org",
                AddrClass::VirtualAlias,
                "error",
                "5.1.1 User unknown in virtual alias table",
            ),
            ("u@r.org", AddrClass::Relay, "relay", "r.org"),
            ("u@sub.r.org", AddrClass::Relay, "relay", "[gw]:25"),
            (
                "u@elsewhere.net",
                AddrClass::Default,
                "smtp",
                "elsewhere.net",
            ),
        ];
        for (rcpt, class, transport, nexthop) in cases {
            let route = r.route("s@example.com", rcpt).await.expect("resolves");
            assert_eq!(
                (
                    route.class,
                    route.transport.as_str(),
                    route.nexthop.as_str()
                ),
                (class, transport, nexthop),
                "{rcpt}"
            );
        }
    }

    /// sender_dependent_default_transport_maps and sender_dependent_relayhost_maps: keys, `<>`,
    /// DUNNO, the default class only, and transport_maps / a transport's own nexthop winning.
    #[tokio::test]
    async fn sender_dependent_routes() {
        let r = resolver(
            "myhostname = mx.example.com\nrelay_domains = r.org\nrelayhost = [smarthost]:587\n\
             recipient_delimiter = +\n\
             sender_dependent_relayhost_maps = inline:{ alice@a.org=[relay-alice]:25, \
             @b.org=[relay-b], <>=[bounces], dunno@b.org=DUNNO }\n\
             sender_dependent_default_transport_maps = inline:{ @c.org=special:[c-gw], \
             @d.org=bulk }\n\
             transport_maps = inline:{ pinned.net=smtp:[pinned] }\n",
        );
        // (sender, recipient, transport, nexthop)
        let cases = [
            ("alice@a.org", "u@far.net", "smtp", "[relay-alice]:25"),
            ("alice+tag@a.org", "u@far.net", "smtp", "[relay-alice]:25"),
            ("ALICE@A.ORG", "u@far.net", "smtp", "[relay-alice]:25"),
            ("bob@a.org", "u@far.net", "smtp", "[smarthost]:587"),
            ("x@b.org", "u@far.net", "smtp", "[relay-b]"),
            ("dunno@b.org", "u@far.net", "smtp", "[smarthost]:587"),
            ("", "u@far.net", "smtp", "[bounces]"),
            // The transport's own nexthop beats the sender-dependent relay host.
            ("x@c.org", "u@far.net", "special", "[c-gw]"),
            ("x@d.org", "u@far.net", "bulk", "[smarthost]:587"),
            // Relay domains and local mail are not sender-dependent.
            ("alice@a.org", "u@r.org", "relay", "r.org"),
            ("x@c.org", "u@mx.example.com", "local", "mx.example.com"),
            // transport_maps win.
            ("alice@a.org", "u@pinned.net", "smtp", "[pinned]"),
            ("x@d.org", "u@pinned.net", "smtp", "[pinned]"),
        ];
        for (sender, rcpt, transport, nexthop) in cases {
            let route = r.route(sender, rcpt).await.expect("resolves");
            assert_eq!(
                (route.transport.as_str(), route.nexthop.as_str()),
                (transport, nexthop),
                "<{sender}> -> {rcpt}"
            );
        }
    }

    #[tokio::test]
    async fn relocated_recipients_go_to_the_error_transport() {
        let r = resolver(
            "myhostname = mx.example.com\nrecipient_delimiter = +\n\
             relocated_maps = inline:{ kdent@ora.com=kdent@oreilly.com, @example.com=oreilly.com, old@mx.example.com=new@x, olduser=gone@y }\n",
        );
        // (recipient, nexthop of the error transport; None = not relocated)
        let cases = [
            (
                "kdent@ora.com",
                Some("5.1.6 User has moved to kdent@oreilly.com"),
            ),
            (
                "KDent+tag@ora.com",
                Some("5.1.6 User has moved to kdent@oreilly.com"),
            ),
            (
                "anyone@example.com",
                Some("5.1.6 User has moved to oreilly.com"),
            ),
            ("old@mx.example.com", Some("5.1.6 User has moved to new@x")),
            ("other@ora.com", None),
            // A bare local-part key applies to local domains only.
            (
                "olduser@mx.example.com",
                Some("5.1.6 User has moved to gone@y"),
            ),
            ("olduser@elsewhere.org", None),
        ];
        for (rcpt, want) in cases {
            let route = r.route("", rcpt).await.expect("resolves");
            let got = (route.transport == "error").then_some(route.nexthop.as_str());
            assert_eq!(got, want, "{rcpt}");
        }
    }

    #[tokio::test]
    async fn content_filter_overrides_every_route() {
        let r =
            resolver("myhostname = mx.example.com\nrelocated_maps = inline:{ old@x.org=new@y }\n");
        for rcpt in ["u@mx.example.com", "u@elsewhere.net", "old@x.org"] {
            let route = filtered(
                r.route("", rcpt).await.expect("resolves"),
                "smtp:[127.0.0.1]:10025",
            );
            assert_eq!(
                (
                    route.transport.as_str(),
                    route.nexthop.as_str(),
                    route.recipient.as_str()
                ),
                ("smtp", "[127.0.0.1]:10025", rcpt)
            );
        }
        let route = filtered(
            r.route("", "u@elsewhere.net").await.expect("resolves"),
            "scan:",
        );
        assert_eq!(
            (route.transport.as_str(), route.nexthop.as_str()),
            ("scan", "elsewhere.net")
        );
    }
}
