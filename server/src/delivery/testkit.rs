//! Test helpers for delivery and qmgr tests (compiled only for tests): a fake LMTP/SMTP server on
//! 127.0.0.1:0 or a unix socket whose replies a closure scripts per recipient and stage, and
//! builders for requests and configurations. Not a conformance server: just enough dialogue.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::{RcptRequest, Request};
use crate::config::Config;

/// When the fake server asks the script for a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reply to `RCPT TO` (non-2xx rejects the recipient).
    Rcpt,
    /// LMTP: this recipient's reply after the final dot; SMTP: the one reply (first recipient).
    /// An empty string hangs up.
    Data,
}

#[derive(Debug, Clone, Default)]
pub struct Transaction {
    pub hello: String,
    pub mail_from: String,
    /// Accepted recipients.
    pub rcpts: Vec<String>,
    /// DATA as received (still dot-stuffed), without the final `.` line.
    pub data: Vec<u8>,
    /// MAIL arrived together with later commands.
    pub pipelined: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Tcp,
    Unix,
}

type Script = Arc<dyn Fn(&str, Stage) -> String + Send + Sync>;

pub struct FakeLmtp {
    /// What to put in the route: `inet:127.0.0.1:PORT` or `unix:private/fake-lmtp-N`.
    pub nexthop: String,
    log: Arc<Mutex<Vec<Transaction>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeLmtp {
    /// An LMTP server; a unix socket goes under `queue_dir/private/`.
    pub async fn start(
        listen: Listen,
        queue_dir: &Path,
        pipelining: bool,
        script: impl Fn(&str, Stage) -> String + Send + Sync + 'static,
    ) -> FakeLmtp {
        Self::start_with(listen, queue_dir, pipelining, false, Arc::new(script)).await
    }

    /// An SMTP server on TCP (one reply after the dot).
    pub async fn start_smtp(
        queue_dir: &Path,
        script: impl Fn(&str, Stage) -> String + Send + Sync + 'static,
    ) -> FakeLmtp {
        Self::start_with(Listen::Tcp, queue_dir, true, true, Arc::new(script)).await
    }

    async fn start_with(
        listen: Listen,
        queue_dir: &Path,
        pipelining: bool,
        smtp: bool,
        script: Script,
    ) -> FakeLmtp {
        let log: Arc<Mutex<Vec<Transaction>>> = Arc::default();
        let (nexthop, task) = match listen {
            Listen::Tcp => {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("binds");
                let port = l.local_addr().expect("addr").port();
                let log2 = log.clone();
                let task = tokio::spawn(async move {
                    while let Ok((s, _)) = l.accept().await {
                        let _ = s.set_nodelay(true);
                        tokio::spawn(serve(s, script.clone(), log2.clone(), pipelining, smtp));
                    }
                });
                (format!("inet:127.0.0.1:{port}"), task)
            }
            Listen::Unix => {
                static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                let name = format!(
                    "private/fake-lmtp-{}",
                    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                );
                let path = queue_dir.join(&name);
                std::fs::create_dir_all(queue_dir.join("private")).expect("mkdir");
                let l = tokio::net::UnixListener::bind(&path).expect("binds");
                let log2 = log.clone();
                let task = tokio::spawn(async move {
                    while let Ok((s, _)) = l.accept().await {
                        tokio::spawn(serve(s, script.clone(), log2.clone(), pipelining, smtp));
                    }
                });
                (format!("unix:{name}"), task)
            }
        };
        FakeLmtp { nexthop, log, task }
    }

    /// Completed transactions so far.
    pub fn transactions(&self) -> Vec<Transaction> {
        self.log.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    script: Script,
    log: Arc<Mutex<Vec<Transaction>>>,
    pipelining: bool,
    smtp: bool,
) {
    let mut s = BufReader::new(s);
    if s.get_mut()
        .write_all(b"220 fake.example Dovecot ready.\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut tx = Transaction::default();
    let mut line = String::new();
    loop {
        line.clear();
        match s.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let cmd = line.trim_end_matches(['\r', '\n']).to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply: String = if upper.starts_with("LHLO") || upper.starts_with("EHLO") {
            tx.hello = upper.get(..4).unwrap_or("").to_string();
            let pipe = if pipelining { "250-PIPELINING\r\n" } else { "" };
            format!(
                "250-fake.example\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n{pipe}250 CHUNKING\r\n"
            )
        } else if upper.starts_with("MAIL FROM:") {
            tx.pipelined = !s.buffer().is_empty();
            tx.mail_from = cmd
                .get(10..)
                .unwrap_or("")
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string();
            "250 2.1.0 OK\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = cmd
                .get(8..)
                .unwrap_or("")
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string();
            let r = script(&rcpt, Stage::Rcpt);
            if r.starts_with('2') {
                tx.rcpts.push(rcpt);
            }
            format!("{r}\r\n")
        } else if upper == "DATA" {
            if tx.rcpts.is_empty() {
                "503 5.5.1 No valid recipients\r\n".into()
            } else {
                if s.get_mut().write_all(b"354 OK\r\n").await.is_err() {
                    return;
                }
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    match s.read_until(b'\n', &mut l).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    data.extend_from_slice(&l);
                }
                tx.data = data;
                let mut out = String::new();
                let who: Vec<String> = if smtp {
                    tx.rcpts.iter().take(1).cloned().collect()
                } else {
                    tx.rcpts.clone()
                };
                for r in &who {
                    let reply = script(r, Stage::Data);
                    if reply.is_empty() {
                        let _ = s.get_mut().write_all(out.as_bytes()).await;
                        if let Ok(mut v) = log.lock() {
                            v.push(std::mem::take(&mut tx));
                        }
                        return;
                    }
                    out.push_str(&reply);
                    out.push_str("\r\n");
                }
                if let Ok(mut v) = log.lock() {
                    v.push(std::mem::take(&mut tx));
                }
                out
            }
        } else if upper == "RSET" {
            tx = Transaction {
                hello: tx.hello.clone(),
                ..Transaction::default()
            };
            "250 2.0.0 OK\r\n".into()
        } else if upper == "QUIT" {
            let _ = s.get_mut().write_all(b"221 2.0.0 Bye\r\n").await;
            return;
        } else {
            "500 5.5.2 Unknown command\r\n".into()
        };
        if s.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A request from `sender@example.com` with these recipients (index = position).
pub fn request(nexthop: &str, rcpts: &[&str]) -> Request {
    Request {
        queue_id: "ABCDEF123456".into(),
        sender: "sender@example.com".into(),
        nexthop: nexthop.into(),
        recipients: rcpts
            .iter()
            .enumerate()
            .map(|(index, r)| RcptRequest {
                index,
                address: r.to_string(),
                original: r.to_string(),
                dsn: Default::default(),
            })
            .collect(),
        content: Arc::new(b"Subject: test\r\n\r\nhello\r\n".to_vec()),
        arrival: SystemTime::now(),
        envid: None,
        ret: None,
        smtputf8: false,
    }
}

/// A configuration with `queue_directory = dir`, a fixed myhostname, plus `extra` main.cf text.
pub fn test_config(dir: &Path, extra: &str) -> Config {
    test_config_master(dir, extra, "")
}

pub fn test_config_master(dir: &Path, extra: &str, master: &str) -> Config {
    let mut main = format!("queue_directory = {}\n", dir.display());
    if !extra.contains("myhostname") {
        main.push_str("myhostname = mx.example.com\n");
    }
    main.push_str(extra);
    Config::from_text(dir, &main, master)
        .expect("valid test config")
        .0
}
