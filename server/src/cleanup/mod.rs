//! cleanup(8): turns an accepted message into a queue file — completes unqualified addresses
//! with `myorigin`, expands `virtual_alias_maps` (see `virtual_alias`), drops duplicate
//! recipients, counts `Received:` hops (`hopcount_limit`), writes the file through
//! `queue::store` (fsynced and renamed before it returns) and wakes qmgr. Entry: `Cleanup::submit`.

pub mod virtual_alias;

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::config::Config;
use crate::dsn::Status;
use crate::maps::TableList;
use crate::queue::store::Store;
use crate::queue::{Envelope, Recipient};
use crate::smtpd::{Message, SessionInfo};
use virtual_alias::AliasSettings;

pub struct Cleanup {
    store: Arc<Store>,
    wakeup: Arc<Notify>,
    alias_maps: TableList,
    alias: AliasSettings,
    myorigin: String,
    myhostname: String,
    hopcount_limit: usize,
}

impl Cleanup {
    pub fn new(
        cfg: &Config,
        alias_maps: TableList,
        store: Arc<Store>,
        wakeup: Arc<Notify>,
    ) -> Cleanup {
        let limit = |name: &str| usize::try_from(cfg.get_int(name)).unwrap_or(1000).max(1);
        Cleanup {
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
        }
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
        let sender = self.qualify(&msg.sender);
        let mut recipients: Vec<Recipient> = Vec::new();
        for rcpt in &msg.recipients {
            let original = self.qualify(rcpt);
            for address in virtual_alias::expand(&self.alias_maps, &original, &self.alias).await? {
                if !recipients.iter().any(|r| r.address == address) {
                    recipients.push(Recipient::with_original(address, original.clone()));
                }
            }
        }
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
        if let Some(user) = &session.sasl_username {
            env.attrs.push(("sasl_username".into(), user.clone()));
        }
        let store = self.store.clone();
        let data = msg.data;
        let message_id = header_value(header_block(&data), "message-id");
        let written = tokio::task::spawn_blocking(move || store.enqueue(&env, &data))
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
}
