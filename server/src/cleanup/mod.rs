//! cleanup(8): turns an accepted message into a queue file — counts `Received:` hops
//! (`hopcount_limit`), runs the content checks (see `message`), completes unqualified
//! addresses with `myorigin`, rewrites envelope addresses in Postfix's order — canonical
//! (`canonical`), masquerading (`masquerade`), then `virtual_alias_maps` expansion
//! (`virtual_alias`) — adds `recipient_bcc_maps`, `sender_bcc_maps` and `always_bcc`
//! recipients, drops duplicate recipients, writes the file through `queue::store` (fsynced and
//! renamed before it returns; `hold/` for HOLD) and wakes qmgr. Content inspection
//! (`header_checks`, `mime_header_checks`, `nested_header_checks`, `body_checks`) is
//! `message` over the `mime` walker; header addresses of local clients are rewritten
//! (`header_rewrite`). `relocated_maps` is smtpd's and resolve's business, not cleanup's.
//! Entry points: `Cleanup::new`, `Cleanup::submit`.

pub mod canonical;
pub mod header_checks;
pub mod header_rewrite;
pub mod masquerade;
pub mod message;
pub mod mime;
pub mod virtual_alias;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::config::Config;
use crate::dsn::{RcptDsn, Status};
use crate::maps::{DomainList, MapError, Maps, TableList};
use crate::queue::store::Store;
use crate::queue::{ATTR_ENVID, ATTR_RET, Envelope, Queue, QueueId, Recipient};
use crate::smtpd::{Message, SessionInfo};
use canonical::{Canonical, Classes, LocalDomains, MapSettings, Side};
use masquerade::Masquerade;
use virtual_alias::AliasSettings;

pub struct Cleanup {
    store: Arc<Store>,
    wakeup: Arc<Notify>,
    alias_maps: TableList,
    alias: AliasSettings,
    myorigin: String,
    myhostname: String,
    hopcount_limit: usize,
    local: LocalDomains,
    canon: MapSettings,
    sender_canonical: Canonical,
    recipient_canonical: Canonical,
    masquerade: Masquerade,
    masquerade_classes: Classes,
    always_bcc: String,
    sender_bcc_maps: TableList,
    recipient_bcc_maps: TableList,
    content: message::Tables,
    /// `local_header_rewrite_clients` and `remote_header_rewrite_domain`.
    rewrite_clients: header_rewrite::RewriteClients,
    remote_header_domain: String,
    content_limits: message::Limits,
    /// Services whose `receive_override_options` include `no_header_body_checks` ("*": all).
    no_content_checks: Vec<String>,
    /// Queue ids for discarded messages (never written).
    discards: AtomicU32,
}

impl Cleanup {
    /// `alias_maps` is shared with smtpd's RCPT checks; the other tables are opened from `maps`.
    pub fn new(
        cfg: &Config,
        maps: &Maps,
        alias_maps: TableList,
        store: Arc<Store>,
        wakeup: Arc<Notify>,
    ) -> Result<Cleanup, MapError> {
        let limit = |name: &str| usize::try_from(cfg.get_int(name)).unwrap_or(1000).max(1);
        let classes = |name: &str| {
            let (c, unknown) = Classes::parse(&cfg.get_list(name));
            for u in unknown {
                tracing::warn!("{name}: unknown address class \"{u}\"; ignored");
            }
            c
        };
        let common = maps.open_list(&cfg.get("canonical_maps"))?;
        let common_classes = classes("canonical_classes");
        let propagate = cfg.get_list("propagate_unmatched_extensions");
        Ok(Cleanup {
            store,
            wakeup,
            alias_maps,
            alias: AliasSettings {
                delimiter: cfg.get("recipient_delimiter"),
                expansion_limit: limit("virtual_alias_expansion_limit"),
                recursion_limit: limit("virtual_alias_recursion_limit"),
                propagate_extensions: cfg
                    .get_list("propagate_unmatched_extensions")
                    .iter()
                    .any(|c| c == "virtual"),
            },
            myorigin: cfg.get("myorigin"),
            myhostname: cfg.get("myhostname"),
            hopcount_limit: limit("hopcount_limit"),
            local: LocalDomains {
                myorigin: cfg.get("myorigin"),
                mydestination: DomainList::new(maps, &cfg.get("mydestination"), false, cfg.dir())?,
            },
            canon: MapSettings {
                delimiter: cfg.get("recipient_delimiter"),
                propagate_extensions: propagate.iter().any(|c| c == "canonical"),
            },
            sender_canonical: Canonical {
                specific: maps.open_list(&cfg.get("sender_canonical_maps"))?,
                specific_classes: classes("sender_canonical_classes"),
                common: common.clone(),
                common_classes,
            },
            recipient_canonical: Canonical {
                specific: maps.open_list(&cfg.get("recipient_canonical_maps"))?,
                specific_classes: classes("recipient_canonical_classes"),
                common,
                common_classes,
            },
            masquerade: Masquerade::new(
                &cfg.get_list("masquerade_domains"),
                &cfg.get_list("masquerade_exceptions"),
            ),
            masquerade_classes: classes("masquerade_classes"),
            always_bcc: cfg.get("always_bcc").trim().to_string(),
            sender_bcc_maps: maps.open_list(&cfg.get("sender_bcc_maps"))?,
            recipient_bcc_maps: maps.open_list(&cfg.get("recipient_bcc_maps"))?,
            rewrite_clients: header_rewrite::RewriteClients::new(
                &cfg.get_list("local_header_rewrite_clients"),
                crate::delivery::smtp::own_addresses(cfg),
                crate::smtpd::check::Networks::parse(&cfg.get_list("mynetworks")).unwrap_or_else(
                    |e| {
                        tracing::warn!("local_header_rewrite_clients: mynetworks: {e}");
                        crate::smtpd::check::Networks::default()
                    },
                ),
            ),
            remote_header_domain: cfg.get("remote_header_rewrite_domain").trim().to_string(),
            no_content_checks: no_content_checks(cfg),
            content: message::Tables {
                header: maps.open_list(&cfg.get("header_checks"))?,
                mime: maps.open_list(&cfg.get("mime_header_checks"))?,
                nested: maps.open_list(&cfg.get("nested_header_checks"))?,
                body: maps.open_list(&cfg.get("body_checks"))?,
            },
            content_limits: message::Limits {
                body_size: usize::try_from(cfg.get_int("body_checks_size_limit")).unwrap_or(51_200),
                nesting: limit("mime_nesting_limit"),
            },
            discards: AtomicU32::new(0),
        })
    }

    /// Canonical mapping then masquerading of one envelope address (before virtual aliasing).
    async fn rewrite(&self, side: Side, addr: &str) -> Result<String, Status> {
        let (canon, masq) = match side {
            Side::Sender => (
                &self.sender_canonical,
                self.masquerade_classes.envelope_sender,
            ),
            Side::Recipient => (
                &self.recipient_canonical,
                self.masquerade_classes.envelope_recipient,
            ),
        };
        let out = canonical::rewrite(canon, side, addr, &self.canon, &self.local).await?;
        Ok(if masq {
            self.masquerade.apply(&out)
        } else {
            out
        })
    }

    /// A `*_bcc_maps` lookup (compat-specs §3.5.1 keys): the first address of the result.
    async fn bcc_lookup(&self, maps: &TableList, addr: &str) -> Result<Option<String>, Status> {
        if maps.is_empty() || addr.is_empty() {
            return Ok(None);
        }
        let local = self.local.is_local(addr).await?;
        let found = maps
            .find_addr(addr, &self.canon.delimiter, local)
            .await
            .map_err(|e| {
                tracing::warn!("cleanup: bcc lookup for {addr}: {e}");
                Status::temp_lookup_failure(addr)
            })?;
        Ok(found.and_then(|m| {
            m.value
                .split([',', ' ', '\t'])
                .map(str::trim)
                .find(|v| !v.is_empty())
                .map(|v| self.qualify(v))
        }))
    }

    /// One envelope recipient through rewriting and virtual alias expansion into `out`
    /// (duplicates dropped). Returns the rewritten, not yet expanded address.
    async fn add_recipient(
        &self,
        out: &mut Vec<Recipient>,
        original: &str,
        dsn: &RcptDsn,
    ) -> Result<String, Status> {
        let rewritten = self.rewrite(Side::Recipient, original).await?;
        for address in virtual_alias::expand(&self.alias_maps, &rewritten, &self.alias).await? {
            if !out.iter().any(|r| r.address == address) {
                // Expansions inherit the client's NOTIFY/ORCPT, as in Postfix.
                out.push(
                    Recipient::with_original(address, original.to_string()).with_dsn(dsn.clone()),
                );
            }
        }
        Ok(rewritten)
    }

    /// One header address: completed with `domain` when unqualified, then canonical mapping
    /// and masquerading for the header classes.
    async fn rewrite_header_addr(
        &self,
        side: Side,
        addr: &str,
        domain: &str,
    ) -> Result<String, Status> {
        let addr = if addr.contains('@') {
            addr.to_string()
        } else {
            format!("{addr}@{domain}")
        };
        let (canon, masq) = match side {
            Side::Sender => (
                &self.sender_canonical,
                self.masquerade_classes.header_sender,
            ),
            Side::Recipient => (
                &self.recipient_canonical,
                self.masquerade_classes.header_recipient,
            ),
        };
        let out = canonical::rewrite_header(canon, side, &addr, &self.canon, &self.local).await?;
        Ok(if masq {
            self.masquerade.apply(&out)
        } else {
            out
        })
    }

    /// Header address rewriting of the primary header (ADDRESS_REWRITING_README): for local
    /// clients (`local_header_rewrite_clients`) with `$myorigin`, for remote clients only when
    /// `remote_header_rewrite_domain` is set, with that domain. Returns the new message, or
    /// `None` when nothing changed.
    async fn rewrite_headers(
        &self,
        session: &SessionInfo,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, Status> {
        let domain = if self.rewrite_clients.is_local(session) {
            self.myorigin.as_str()
        } else if !self.remote_header_domain.is_empty() {
            self.remote_header_domain.as_str()
        } else {
            return Ok(None);
        };
        let (header, body) = header_checks::split_header(data);
        let mut out: Vec<u8> = Vec::with_capacity(data.len() + 64);
        let mut changed = false;
        for line in header_checks::logical_lines(header) {
            let text = std::str::from_utf8(line).ok();
            let parsed = text.and_then(|t| {
                let (name, value) = t.split_once(':')?;
                Some((name, value, header_rewrite::HeaderKind::of(name)?))
            });
            let Some((name, value, kind)) = parsed else {
                out.extend_from_slice(line);
                continue;
            };
            let side = match kind {
                header_rewrite::HeaderKind::Sender => Side::Sender,
                header_rewrite::HeaderKind::Recipient => Side::Recipient,
            };
            let spans = header_rewrite::address_spans(value);
            let mut new = Vec::with_capacity(spans.len());
            for r in &spans {
                let addr = value.get(r.clone()).unwrap_or_default();
                new.push(self.rewrite_header_addr(side, addr, domain).await?);
            }
            let value2 = header_rewrite::splice(value, &spans, &new);
            if value2 != value {
                changed = true;
            }
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            out.extend_from_slice(value2.as_bytes());
        }
        if !changed {
            return Ok(None);
        }
        out.extend_from_slice(body);
        Ok(Some(out))
    }

    fn qualify(&self, addr: &str) -> String {
        if addr.is_empty() || addr.contains('@') {
            addr.to_string()
        } else {
            format!("{addr}@{}", self.myorigin)
        }
    }

    /// Rewrites, writes and fsyncs the queue file; returns the queue id. Errors carry the reply.
    pub async fn submit(&self, session: &SessionInfo, msg: Message) -> Result<String, Status> {
        let hops = count_received(&msg.data);
        if hops >= self.hopcount_limit {
            return Err(Status::new(554, "5.4.0", "Error: too many hops"));
        }
        let skip = self
            .no_content_checks
            .iter()
            .any(|s| s == "*" || *s == session.service);
        let none = message::Tables::default();
        let tables = if skip { &none } else { &self.content };
        let checked = message::inspect(tables, self.content_limits, &msg.data).await?;
        if let Some(status) = checked.reject {
            return Err(status);
        }
        if checked.discard.is_some() {
            let n = self.discards.fetch_add(1, Ordering::Relaxed);
            let id = QueueId::generate(SystemTime::now(), n);
            tracing::info!("{}: discarded by content checks", id.as_str());
            return Ok(id.as_str().to_string());
        }
        let data = if checked.data == msg.data {
            msg.data
        } else {
            checked.data
        };
        let data = match self.rewrite_headers(session, &data).await? {
            Some(rewritten) => rewritten,
            None => data,
        };
        let sender = self
            .rewrite(Side::Sender, &self.qualify(&msg.sender))
            .await?;
        let mut recipients: Vec<Recipient> = Vec::new();
        let mut bccs: Vec<String> = Vec::new();
        for (i, rcpt) in msg.recipients.iter().enumerate() {
            let dsn = msg.rcpt_dsn.get(i).cloned().unwrap_or_default();
            let rewritten = self
                .add_recipient(&mut recipients, &self.qualify(rcpt), &dsn)
                .await?;
            if let Some(bcc) = self
                .bcc_lookup(&self.recipient_bcc_maps, &rewritten)
                .await?
            {
                bccs.push(bcc);
            }
        }
        if let Some(bcc) = self.bcc_lookup(&self.sender_bcc_maps, &sender).await? {
            bccs.push(bcc);
        }
        if !self.always_bcc.is_empty() {
            bccs.push(self.qualify(&self.always_bcc));
        }
        // BCC actions of the content checks (header_checks(5) `BCC user@domain`).
        bccs.extend(checked.bcc.iter().map(|b| self.qualify(b)));
        for bcc in bccs {
            self.add_recipient(&mut recipients, &bcc, &RcptDsn::default())
                .await?;
        }
        if let Some(target) = &checked.redirect {
            // REDIRECT: the message goes to that address instead of every recipient.
            recipients = vec![Recipient::new(self.qualify(target))];
        }
        let queue = if checked.hold.is_some() {
            Queue::Hold
        } else {
            Queue::Incoming
        };
        let mut env = Envelope::new(sender, recipients, SystemTime::now());
        env.attrs
            .push(("client_address".into(), session.client.ip().to_string()));
        env.attrs
            .push(("client_name".into(), session.client_name.clone()));
        if let Some(helo) = &session.helo {
            env.attrs.push(("helo_name".into(), helo.clone()));
        }
        env.attrs
            .push(("protocol_name".into(), session.protocol.to_string()));
        if msg.smtputf8 {
            env.attrs
                .push((crate::queue::ATTR_SMTPUTF8.into(), "1".into()));
        }
        if let Some(user) = &session.sasl_username {
            env.attrs.push(("sasl_username".into(), user.clone()));
        }
        if let Some(filter) = &checked.filter {
            // FILTER transport:destination: qmgr routes every recipient there.
            env.attrs.push(("content_filter".into(), filter.clone()));
        }
        // RFC 3461: what bounce needs to honour ENVID= and RET=.
        if let Some(envid) = &msg.envid {
            env.attrs.push((ATTR_ENVID.into(), envid.clone()));
        }
        if let Some(ret) = msg.ret {
            env.attrs.push((ATTR_RET.into(), ret.as_str().into()));
        }
        let store = self.store.clone();
        let message_id = header_value(header_block(&data), "message-id");
        let written = tokio::task::spawn_blocking(move || store.enqueue_in(queue, &env, &data))
            .await
            .map_err(|e| {
                tracing::error!("cleanup: queue writer task failed: {e}");
                Status::new(451, "4.3.0", "Error: queue file write error")
            })?;
        let id = written.map_err(|e| {
            tracing::error!("cleanup: {e}");
            Status::new(451, "4.3.0", "Error: queue file write error")
        })?;
        // cleanup(8)'s line; qmgr logs `from=<…>, size=…, nrcpt=…` when it takes the message.
        match message_id {
            Some(mid) => tracing::info!("{}: message-id={mid}", id.as_str()),
            None => tracing::info!(
                "{}: message-id=<{}@{}>",
                id.as_str(),
                id.as_str(),
                self.myhostname
            ),
        }
        self.wakeup.notify_one();
        Ok(id.as_str().to_string())
    }
}

/// `receive_override_options = no_header_body_checks`: "*" when main.cf sets it, plus every
/// master.cf service that sets it with `-o`. Other options are not implemented (logged).
fn no_content_checks(cfg: &Config) -> Vec<String> {
    let has = |c: &Config, what: &str| {
        let opts = c.get_list("receive_override_options");
        for o in &opts {
            if !o.eq_ignore_ascii_case("no_header_body_checks") {
                tracing::warn!(
                    "receive_override_options: {o} is not implemented ({what}); ignored"
                );
            }
        }
        opts.iter()
            .any(|o| o.eq_ignore_ascii_case("no_header_body_checks"))
    };
    let mut out = Vec::new();
    if has(cfg, "main.cf") {
        out.push("*".to_string());
    }
    for svc in cfg.master() {
        let c = cfg.for_service(svc);
        if c.get("receive_override_options") != cfg.get("receive_override_options")
            && has(&c, &svc.name)
        {
            out.push(svc.name.clone());
        }
    }
    out
}

/// The header block of a message (up to the first empty line), bounded to 64 KiB.
fn header_block(data: &[u8]) -> &[u8] {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data.len(), |p| p + 2);
    &data[..end.min(65536).min(data.len())]
}

/// The unfolded value of the first header `name` (lower-case), if any.
fn header_value(header: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        if field.eq_ignore_ascii_case(name) {
            let mut v = value.trim().to_string();
            while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
                v.push(' ');
                v.push_str(next.trim());
                lines.next();
            }
            return Some(v.trim().to_string());
        }
    }
    None
}

/// Number of `Received:` header lines in the message header.
fn count_received(data: &[u8]) -> usize {
    let mut n = 0;
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:") {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::path::Path;

    /// What one submission produced: the queue and envelope written, or the reply.
    #[derive(Debug, PartialEq)]
    enum Got {
        Queued(Queue, String, Vec<String>),
        Discarded,
        Rejected(u16, String),
    }

    async fn submit(main: &str, sender: &str, rcpts: &[&str], header: &str) -> (Got, Vec<u8>) {
        let (got, content, _) = submit_from(Ipv4Addr::LOCALHOST, main, sender, rcpts, header).await;
        (got, content)
    }

    /// [`submit`] from an SMTP client at `client`; also returns the envelope attributes.
    async fn submit_from(
        client: Ipv4Addr,
        main: &str,
        sender: &str,
        rcpts: &[&str],
        header: &str,
    ) -> (Got, Vec<u8>, Vec<(String, String)>) {
        let base =
            "myhostname = host.example\nmydestination = $myhostname\nrecipient_delimiter = +\n";
        let (cfg, _) = Config::from_text(Path::new("/etc/postern"), &format!("{base}{main}"), "")
            .expect("config");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let maps = Maps::default();
        let aliases = maps
            .open_list(&cfg.get("virtual_alias_maps"))
            .expect("aliases");
        let cleanup = Cleanup::new(&cfg, &maps, aliases, store.clone(), Arc::new(Notify::new()))
            .expect("tables");
        let session = SessionInfo {
            client: SocketAddr::new(client.into(), 0),
            client_name: "localhost".into(),
            helo: None,
            protocol: "ESMTP",
            sasl_username: None,
            service: "smtp".into(),
        };
        let msg = Message {
            sender: sender.into(),
            recipients: rcpts.iter().map(|r| r.to_string()).collect(),
            data: format!("{header}\r\nbody\r\n").into_bytes(),
            body_8bit: false,
            envid: None,
            ret: None,
            rcpt_dsn: Vec::new(),
            smtputf8: false,
        };
        match cleanup.submit(&session, msg).await {
            Err(s) => (
                Got::Rejected(s.code, format!("{} {}", s.dsn, s.text)),
                Vec::new(),
                Vec::new(),
            ),
            Ok(id) => {
                let Some(id) = QueueId::parse(&id) else {
                    panic!("bad id {id}");
                };
                match store.load(&id) {
                    Ok(m) => (
                        Got::Queued(
                            m.queue,
                            m.envelope.sender.clone(),
                            m.envelope
                                .recipients
                                .iter()
                                .map(|r| r.address.clone())
                                .collect(),
                        ),
                        m.content,
                        m.envelope.attrs.clone(),
                    ),
                    Err(_) => (Got::Discarded, Vec::new(), Vec::new()),
                }
            }
        }
    }

    fn queued(q: Queue, sender: &str, rcpts: &[&str]) -> Got {
        Got::Queued(
            q,
            sender.into(),
            rcpts.iter().map(|r| r.to_string()).collect(),
        )
    }

    #[tokio::test]
    async fn submit_rewrites_in_postfix_order() {
        let hdr = "Subject: hi\r\nX-Spam: yes\r\n";
        // (main.cf, sender, recipients, expected)
        let cases: Vec<(&str, &str, Vec<&str>, Got)> = vec![
            // myorigin completion, nothing else.
            (
                "",
                "kim",
                vec!["bo"],
                queued(Queue::Incoming, "kim@host.example", &["bo@host.example"]),
            ),
            // canonical_maps then virtual_alias_maps (canonical runs first).
            (
                "canonical_maps = inline:{ a@x=b@x }\nvirtual_alias_maps = inline:{ b@x=c@y }\n",
                "a@x",
                vec!["a@x"],
                queued(Queue::Incoming, "b@x", &["c@y"]),
            ),
            // sender_/recipient_canonical_maps apply to their side only.
            (
                "sender_canonical_maps = inline:{ a@x=s@x }\nrecipient_canonical_maps = inline:{ a@x=r@x }\n",
                "a@x",
                vec!["a@x"],
                queued(Queue::Incoming, "s@x", &["r@x"]),
            ),
            // canonical_classes without envelope_recipient leaves recipients alone.
            (
                "canonical_maps = inline:{ a@x=b@x }\ncanonical_classes = envelope_sender\n",
                "a@x",
                vec!["a@x"],
                queued(Queue::Incoming, "b@x", &["a@x"]),
            ),
            // Extension propagation (canonical in propagate_unmatched_extensions by default).
            (
                "recipient_canonical_maps = inline:{ john@x=j@y }\n",
                "",
                vec!["john+tag@x"],
                queued(Queue::Incoming, "", &["j+tag@y"]),
            ),
            // Masquerading: envelope sender by default, not the recipient.
            (
                "masquerade_domains = !it.example.com, example.com\nmasquerade_exceptions = root\n",
                "kim@pc.example.com",
                vec!["bo@pc.example.com"],
                queued(Queue::Incoming, "kim@example.com", &["bo@pc.example.com"]),
            ),
            (
                "masquerade_domains = example.com\nmasquerade_classes = envelope_sender, envelope_recipient\n",
                "root@pc.example.com",
                vec!["bo@pc.example.com"],
                queued(Queue::Incoming, "root@example.com", &["bo@example.com"]),
            ),
            // bcc: recipient, sender and always_bcc, no duplicates; bcc addresses are aliased too.
            (
                "recipient_bcc_maps = inline:{ a@x=arch@x }\nsender_bcc_maps = inline:{ s@x=arch@x, @y=copy }\n\
                 always_bcc = audit@x\nvirtual_alias_maps = inline:{ audit@x=aud@z }\n",
                "s@x",
                vec!["a@x", "b@x"],
                queued(Queue::Incoming, "s@x", &["a@x", "b@x", "arch@x", "aud@z"]),
            ),
            (
                "sender_bcc_maps = inline:{ @y=copy }\n",
                "s@y",
                vec!["a@x"],
                queued(Queue::Incoming, "s@y", &["a@x", "copy@host.example"]),
            ),
            // A null sender gets no sender bcc.
            (
                "sender_bcc_maps = static:copy@x\n",
                "",
                vec!["a@x"],
                queued(Queue::Incoming, "", &["a@x"]),
            ),
            // header_checks.
            (
                "header_checks = regexp:{ {/^X-Spam:/ REJECT spam} }\n",
                "s@x",
                vec!["a@x"],
                Got::Rejected(550, "5.7.1 spam".into()),
            ),
            (
                "header_checks = regexp:{ {/^X-Spam:/ DISCARD} }\n",
                "s@x",
                vec!["a@x"],
                Got::Discarded,
            ),
            (
                "header_checks = regexp:{ {/^X-Spam:/ HOLD} }\n",
                "s@x",
                vec!["a@x"],
                queued(Queue::Hold, "s@x", &["a@x"]),
            ),
            (
                "header_checks = regexp:{ {/^X-Spam:/ REDIRECT q@x} }\n",
                "s@x",
                vec!["a@x", "b@x"],
                queued(Queue::Incoming, "s@x", &["q@x"]),
            ),
        ];
        for (main, sender, rcpts, want) in cases {
            let (got, _) = submit(main, sender, &rcpts, hdr).await;
            assert_eq!(got, want, "{main}");
        }
    }

    /// RFC 3461: ENVID/RET become envelope attributes; each recipient's NOTIFY/ORCPT is kept,
    /// and inherited by the addresses a virtual alias expands to.
    #[tokio::test]
    async fn dsn_requests_reach_the_queue_file() {
        use crate::dsn::{Notify as DsnNotify, RcptDsn, Ret};
        let main = "myhostname = host.example\nmydestination = $myhostname\n\
                    virtual_alias_maps = inline:{ {list@x=a@x,b@x} }\n";
        let (cfg, _) = Config::from_text(Path::new("/etc/postern"), main, "").expect("config");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let maps = Maps::default();
        let aliases = maps
            .open_list(&cfg.get("virtual_alias_maps"))
            .expect("aliases");
        let cleanup = Cleanup::new(&cfg, &maps, aliases, store.clone(), Arc::new(Notify::new()))
            .expect("tables");
        let session = SessionInfo {
            client: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
            client_name: "localhost".into(),
            helo: None,
            protocol: "ESMTP",
            sasl_username: None,
            service: "smtp".into(),
        };
        let never = RcptDsn {
            notify: DsnNotify::parse("NEVER").unwrap_or_default(),
            orcpt: None,
        };
        let success = RcptDsn {
            notify: DsnNotify::parse("SUCCESS").unwrap_or_default(),
            orcpt: Some("rfc822;List@x".into()),
        };
        let msg = Message {
            sender: "s@x".into(),
            recipients: vec!["c@x".into(), "list@x".into(), "d@x".into()],
            data: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
            body_8bit: false,
            envid: Some("ID+1".into()),
            ret: Some(Ret::Hdrs),
            rcpt_dsn: vec![never.clone(), success.clone()],
            smtputf8: false,
        };
        let id = cleanup.submit(&session, msg).await.expect("queued");
        let m = store
            .load(&QueueId::parse(&id).expect("id"))
            .expect("loads");
        assert_eq!(m.envelope.attr(ATTR_ENVID), Some("ID+1"));
        assert_eq!(m.envelope.attr(ATTR_RET), Some("HDRS"));
        let got: Vec<(&str, &RcptDsn)> = m
            .envelope
            .recipients
            .iter()
            .map(|r| (r.address.as_str(), &r.dsn))
            .collect();
        let none = RcptDsn::default();
        assert_eq!(
            got,
            [
                ("c@x", &never),
                ("a@x", &success),
                ("b@x", &success),
                ("d@x", &none)
            ]
        );
    }

    #[tokio::test]
    async fn header_edits_reach_the_queue_file() {
        let (got, content) = submit(
            "header_checks = regexp:{ {/^X-Spam:/ IGNORE}, {/^Subject: (.*)/ REPLACE Subject: [x] $$1} }\n",
            "s@x",
            &["a@x"],
            "Subject: hi\r\nX-Spam: yes\r\n",
        )
        .await;
        assert_eq!(got, queued(Queue::Incoming, "s@x", &["a@x"]));
        let text = String::from_utf8_lossy(&content);
        assert!(text.ends_with("Subject: [x] hi\r\n\r\nbody\r\n"), "{text}");
        assert!(!text.contains("X-Spam"), "{text}");
    }

    #[tokio::test]
    async fn body_checks_and_content_actions() {
        let hdr = "Subject: hi\r\n";
        // The test body is the single line "body".
        let (got, _) = submit(
            "body_checks = regexp:{ {/^body$/ REJECT 5.7.1 body rejected} }\n",
            "s@x",
            &["a@x"],
            hdr,
        )
        .await;
        assert_eq!(got, Got::Rejected(550, "5.7.1 body rejected".into()));
        let (got, _) = submit(
            "body_checks = regexp:{ {/^body$/ DISCARD} }\n",
            "s@x",
            &["a@x"],
            hdr,
        )
        .await;
        assert_eq!(got, Got::Discarded);
        // BCC adds a recipient (aliased like any other); FILTER is recorded on the message.
        let (got, _, attrs) = submit_from(
            Ipv4Addr::LOCALHOST,
            "header_checks = regexp:{ {/^Subject:/ BCC audit@x}, {/^Subject:/ FILTER x} }\n\
             body_checks = regexp:{ {/^body/ FILTER smtp:[127.0.0.1]:10025} }\n\
             virtual_alias_maps = inline:{ audit@x=aud@z }\n",
            "s@x",
            &["a@x"],
            hdr,
        )
        .await;
        assert_eq!(got, queued(Queue::Incoming, "s@x", &["a@x", "aud@z"]));
        assert!(
            attrs.contains(&("content_filter".into(), "smtp:[127.0.0.1]:10025".into())),
            "{attrs:?}"
        );
    }

    #[tokio::test]
    async fn receive_override_options_turn_content_checks_off() {
        let rules = "body_checks = regexp:{ {/^body$/ REJECT} }\n";
        let (got, _) = submit(rules, "s@x", &["a@x"], "Subject: x\r\n").await;
        assert!(matches!(got, Got::Rejected(550, _)), "{got:?}");
        let (got, _) = submit(
            &format!("{rules}receive_override_options = no_header_body_checks\n"),
            "s@x",
            &["a@x"],
            "Subject: x\r\n",
        )
        .await;
        assert_eq!(got, queued(Queue::Incoming, "s@x", &["a@x"]));
        // Per service, the way a content filter's reinjection listener is set up.
        let (cfg, _) = Config::from_text(
            Path::new("/etc/postern"),
            "",
            "smtp inet n - n - - smtpd\n127.0.0.1:10026 inet n - n - - smtpd\n -o receive_override_options=no_header_body_checks\n",
        )
        .expect("config");
        assert_eq!(no_content_checks(&cfg), ["127.0.0.1:10026"]);
    }

    #[tokio::test]
    async fn header_addresses_of_local_clients_only() {
        let main = "myorigin = example.com\nsender_canonical_maps = inline:{ kim@example.com=kim.lee@example.com }\n\
                    masquerade_domains = example.com\ninet_interfaces = 127.0.0.1\n";
        let hdr = "From: \"Lee, Kim\" <kim> (home)\r\nTo: bo@pc.example.com,\r\n\tAl <al@elsewhere.org>\r\n\
                   Subject: kim@example.com\r\n";
        // (client, main.cf extra, header lines expected)
        let cases: &[(Ipv4Addr, &str, &str)] = &[
            // A local client: myorigin completion, sender canonical, masquerading; display names,
            // comments and folding kept; Subject untouched.
            (
                Ipv4Addr::LOCALHOST,
                "",
                "From: \"Lee, Kim\" <kim.lee@example.com> (home)\r\nTo: bo@example.com,\r\n\tAl <al@elsewhere.org>\r\n\
                 Subject: kim@example.com\r\n",
            ),
            // A remote client with remote_header_rewrite_domain empty: nothing is rewritten.
            (Ipv4Addr::new(192, 0, 2, 9), "", hdr),
            // ... and with it set: unqualified addresses get that domain, then the maps.
            (
                Ipv4Addr::new(192, 0, 2, 9),
                "remote_header_rewrite_domain = domain.invalid\n",
                "From: \"Lee, Kim\" <kim@domain.invalid> (home)\r\nTo: bo@example.com,\r\n\tAl <al@elsewhere.org>\r\n\
                 Subject: kim@example.com\r\n",
            ),
            // canonical_classes/masquerade_classes without the header classes.
            (
                Ipv4Addr::LOCALHOST,
                "sender_canonical_classes = envelope_sender\nmasquerade_classes = envelope_sender\n",
                "From: \"Lee, Kim\" <kim@example.com> (home)\r\nTo: bo@pc.example.com,\r\n\tAl <al@elsewhere.org>\r\n\
                 Subject: kim@example.com\r\n",
            ),
        ];
        for (client, extra, want) in cases {
            let (got, content, _) =
                submit_from(*client, &format!("{main}{extra}"), "kim", &["bo@x"], hdr).await;
            assert!(matches!(got, Got::Queued(..)), "{got:?}");
            let text = String::from_utf8_lossy(&content);
            assert_eq!(text, format!("{want}\r\nbody\r\n"), "{client} {extra}");
        }
    }

    #[tokio::test]
    async fn tables_that_cannot_open_fail_at_start() {
        let (cfg, _) = Config::from_text(
            Path::new("/nonexistent"),
            "canonical_maps = texthash:/nonexistent/canonical\n",
            "",
        )
        .expect("config");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let maps = Maps::default();
        let made = Cleanup::new(
            &cfg,
            &maps,
            TableList::default(),
            store,
            Arc::new(Notify::new()),
        );
        assert!(made.is_err());
    }

    #[tokio::test]
    async fn failed_lookups_are_temporary_never_not_found() {
        // An sqlite table whose database is missing fails at lookup time, like a server down.
        let dir = tempfile::tempdir().expect("tempdir");
        let cf = dir.path().join("down.cf");
        std::fs::write(
            &cf,
            format!(
                "dbpath = {}/missing/none.db\nquery = SELECT goto FROM alias WHERE address='%s'\n",
                dir.path().display()
            ),
        )
        .expect("write cf");
        let cf = cf.display();
        for param in [
            "canonical_maps",
            "sender_canonical_maps",
            "recipient_canonical_maps",
            "recipient_bcc_maps",
            "sender_bcc_maps",
        ] {
            let (got, _) = submit(&format!("{param} = sqlite:{cf}\n"), "s@x", &["a@x"], "").await;
            match got {
                Got::Rejected(451, text) => assert!(text.starts_with("4.3.0 "), "{param}: {text}"),
                other => panic!("{param}: {other:?}"),
            }
        }
    }

    #[test]
    fn finds_folded_header_values() {
        let msg = b"Subject: x\r\nMessage-ID:\r\n <abc@host>\r\n\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(
            header_value(header_block(msg), "message-id").as_deref(),
            Some("<abc@host>")
        );
        assert_eq!(
            header_value(header_block(b"Subject: y\r\n\r\n"), "message-id"),
            None
        );
    }

    #[test]
    fn counts_received_headers_only_in_the_header() {
        let msg =
            b"Received: a\r\nreceived: b\r\n\tcont\r\nSubject: x\r\n\r\nReceived: in body\r\n";
        assert_eq!(count_received(msg), 2);
    }

    /// RFC 6531: a message whose client declared SMTPUTF8 carries the `smtputf8` envelope
    /// attribute in the queue file; one that did not has none.
    #[tokio::test]
    async fn smtputf8_flag_reaches_the_queue_file() {
        let main = "myhostname = host.example\nmydestination = $myhostname\n";
        let (cfg, _) = Config::from_text(Path::new("/etc/postern"), main, "").expect("config");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let maps = Maps::default();
        let aliases = maps
            .open_list(&cfg.get("virtual_alias_maps"))
            .expect("aliases");
        let cleanup = Cleanup::new(&cfg, &maps, aliases, store.clone(), Arc::new(Notify::new()))
            .expect("tables");
        let session = SessionInfo {
            client: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
            client_name: "localhost".into(),
            helo: None,
            protocol: "ESMTP",
            sasl_username: None,
            service: "smtp".into(),
        };
        for flag in [true, false] {
            let msg = Message {
                sender: "j\u{f6}rg@x".into(),
                recipients: vec!["\u{7528}\u{6237}@x".into()],
                data: "Subject: Gr\u{fc}\u{df}e\r\n\r\nbody\r\n"
                    .as_bytes()
                    .to_vec(),
                body_8bit: true,
                envid: None,
                ret: None,
                rcpt_dsn: Vec::new(),
                smtputf8: flag,
            };
            let id = cleanup.submit(&session, msg).await.expect("queued");
            let m = store
                .load(&QueueId::parse(&id).expect("id"))
                .expect("loads");
            let want = flag.then_some("1");
            assert_eq!(m.envelope.attr(crate::queue::ATTR_SMTPUTF8), want);
            assert_eq!(m.envelope.sender, "j\u{f6}rg@x");
        }
    }
}
