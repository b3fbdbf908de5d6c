//! Address resolution (trivial-rewrite's resolve): recipient domain → address class
//! (local, virtual alias, virtual mailbox, relay, default) and recipient → route
//! (transport, nexthop, recipient), through the configured domain lists and transport_maps.
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
    delimiter: String,
}

/// Splits `transport:nexthop`; a value without `:` is a transport with an empty nexthop.
pub fn split_transport(value: &str) -> (String, String) {
    match value.split_once(':') {
        Some((t, n)) => (t.trim().to_string(), n.trim().to_string()),
        None => (value.trim().to_string(), String::new()),
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
            delimiter: cfg.get("recipient_delimiter"),
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

    /// Recipient → route: the class default, then `transport_maps` (compat-specs §3.5.3).
    pub async fn route(&self, rcpt: &str) -> Result<Route, MapError> {
        let domain = rcpt
            .rsplit_once('@')
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default();
        let class = self.class(&domain).await?;
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
        let (mut transport, mut nexthop) = split_transport(default);
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
            let route = r.route(rcpt).await.expect("resolves");
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
}
