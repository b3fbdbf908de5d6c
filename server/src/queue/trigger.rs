//! Wake-up triggers: how the tools poke the running `postern serve`. Postfix uses FIFOs named
//! `public/qmgr` and `public/pickup` under `queue_directory`; we use UNIX datagram sockets at
//! the same paths (tokio reads them without blocking a thread, and a sender learns at once
//! that nobody listens: "mail system is down").
//!
//! One datagram = one request, a letter and an argument (ASCII):
//! `W` wake up (new mail in `incoming/` or `maildrop/`), `F` flush (every deferred message is
//! due now: `postqueue -f`, `sendmail -q`), `S<site>` flush mail for one site
//! (`postqueue -s`), `I<queue id>` flush one message (`postqueue -i`). Anything else is ignored.
//! Triggers are hints: losing one only delays mail until the next periodic scan.
//! Entry points: `send` (tools), `Listener::bind` / `Listener::recv` (the daemon tasks).

use std::path::{Path, PathBuf};

use super::QueueId;

/// The directory of the trigger sockets under `queue_directory`.
pub const PUBLIC_DIR: &str = "public";
/// qmgr's trigger (flush requests, wake-ups for `incoming/`).
pub const QMGR: &str = "qmgr";
/// pickup's trigger (new files in `maildrop/`).
pub const PICKUP: &str = "pickup";

/// A request sent through a trigger socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Wakeup,
    Flush,
    FlushSite(String),
    FlushId(QueueId),
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Wakeup => b"W".to_vec(),
            Request::Flush => b"F".to_vec(),
            Request::FlushSite(s) => format!("S{s}").into_bytes(),
            Request::FlushId(id) => format!("I{id}").into_bytes(),
        }
    }

    pub fn parse(b: &[u8]) -> Option<Request> {
        let (&tag, rest) = b.split_first()?;
        let arg = std::str::from_utf8(rest).ok()?.trim();
        match tag {
            b'W' => Some(Request::Wakeup),
            b'F' => Some(Request::Flush),
            b'S' if !arg.is_empty() => Some(Request::FlushSite(arg.to_ascii_lowercase())),
            b'I' => QueueId::parse(arg).map(Request::FlushId),
            _ => None,
        }
    }
}

/// The socket path of `service` under `queue_dir`.
pub fn path(queue_dir: &Path, service: &str) -> PathBuf {
    queue_dir.join(PUBLIC_DIR).join(service)
}

/// Sends one request to `service`. An error means nobody listens (the mail system is down)
/// or the socket cannot be reached.
pub fn send(queue_dir: &Path, service: &str, req: &Request) -> std::io::Result<()> {
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    sock.send_to(&req.encode(), path(queue_dir, service))
        .map(|_| ())
}

/// A bound trigger socket.
pub struct Listener {
    sock: tokio::net::UnixDatagram,
    path: PathBuf,
}

impl Listener {
    /// Binds `public/SERVICE` (creating `public/`, replacing a stale socket). Must run inside
    /// a tokio runtime. Anyone may write to it, as to Postfix's public FIFOs.
    pub fn bind(queue_dir: &Path, service: &str) -> std::io::Result<Listener> {
        use std::os::unix::fs::PermissionsExt;
        let dir = queue_dir.join(PUBLIC_DIR);
        std::fs::create_dir_all(&dir)?;
        let path = path(queue_dir, service);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let sock = tokio::net::UnixDatagram::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        Ok(Listener { sock, path })
    }

    /// The next valid request (malformed datagrams are skipped); None when the socket fails.
    pub async fn recv(&self) -> Option<Request> {
        let mut buf = [0u8; 512];
        loop {
            match self.sock.recv(&mut buf).await {
                Ok(n) => {
                    if let Some(r) = buf.get(..n).and_then(Request::parse) {
                        return Some(r);
                    }
                }
                Err(e) => {
                    tracing::warn!("{}: {e}", self.path.display());
                    return None;
                }
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let id = QueueId::parse("ABCDEF123456").expect("id");
        for r in [
            Request::Wakeup,
            Request::Flush,
            Request::FlushSite("example.com".into()),
            Request::FlushId(id),
        ] {
            assert_eq!(Request::parse(&r.encode()), Some(r));
        }
        assert_eq!(Request::parse(b""), None);
        assert_eq!(Request::parse(b"S"), None);
        assert_eq!(Request::parse(b"Inot-an-id"), None);
        assert_eq!(Request::parse(b"X"), None);
    }

    #[tokio::test]
    async fn send_reaches_the_listener_and_fails_when_nobody_listens() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(send(dir.path(), QMGR, &Request::Flush).is_err());
        let l = Listener::bind(dir.path(), QMGR).expect("binds");
        send(dir.path(), QMGR, &Request::FlushSite("Example.COM".into())).expect("sends");
        assert_eq!(
            l.recv().await,
            Some(Request::FlushSite("example.com".into()))
        );
        drop(l);
        assert!(send(dir.path(), QMGR, &Request::Wakeup).is_err());
    }
}
