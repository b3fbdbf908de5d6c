//! `postern up`: the embedded default. On first run it lays out a data directory — `etc/`
//! (main.cf, master.cf, sqlite tables with PostfixAdmin's queries, `tls/` with a self-signed
//! certificate), `spool/`, `mail/`, `db.sqlite` — and reports that it did; later runs reuse it
//! untouched. Submission (587) and smtps (465) require TLS and AUTH (built-in SASL on the
//! database) and check the sender against `smtpd_sender_login_maps`; port 25 offers STARTTLS
//! and no AUTH. Only file layout lives
//! here; the database, superadmin and the running services are the caller's (main.rs).

use std::io;
use std::path::{Path, PathBuf};

/// The shipped sqlite table files (PostfixAdmin's documented queries, sqlite dialect).
pub const SQLITE_TABLES: &[(&str, &str)] = &[
    (
        "virtual_domains_maps.cf",
        include_str!("../conf/sqlite/virtual_domains_maps.cf"),
    ),
    (
        "virtual_alias_maps.cf",
        include_str!("../conf/sqlite/virtual_alias_maps.cf"),
    ),
    (
        "virtual_alias_domain_maps.cf",
        include_str!("../conf/sqlite/virtual_alias_domain_maps.cf"),
    ),
    (
        "virtual_alias_domain_catchall_maps.cf",
        include_str!("../conf/sqlite/virtual_alias_domain_catchall_maps.cf"),
    ),
    (
        "virtual_mailbox_maps.cf",
        include_str!("../conf/sqlite/virtual_mailbox_maps.cf"),
    ),
    (
        "virtual_alias_domain_mailbox_maps.cf",
        include_str!("../conf/sqlite/virtual_alias_domain_mailbox_maps.cf"),
    ),
    (
        "relay_domains.cf",
        include_str!("../conf/sqlite/relay_domains.cf"),
    ),
    (
        "transport_maps.cf",
        include_str!("../conf/sqlite/transport_maps.cf"),
    ),
    (
        "sender_login_maps.cf",
        include_str!("../conf/sqlite/sender_login_maps.cf"),
    ),
    (
        "sasl_passwords.cf",
        include_str!("../conf/sqlite/sasl_passwords.cf"),
    ),
];

/// Where things are in a data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub data: PathBuf,
    pub etc: PathBuf,
    pub db: PathBuf,
    pub spool: PathBuf,
    pub mail: PathBuf,
}

impl Layout {
    pub fn new(data: &Path) -> Layout {
        let data = if data.is_absolute() {
            data.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|c| c.join(data))
                .unwrap_or_else(|_| data.to_path_buf())
        };
        Layout {
            etc: data.join("etc"),
            db: data.join("db.sqlite"),
            spool: data.join("spool"),
            mail: data.join("mail"),
            data,
        }
    }

    pub fn database_url(&self) -> String {
        format!("sqlite://{}", self.db.display())
    }
}

/// Listening ports: Postfix's as root, +2500 unprivileged (DESIGN §4).
pub fn ports(as_root: bool) -> (u16, u16) {
    if as_root { (25, 587) } else { (2525, 2587) }
}

/// Addresses the generated configuration listens on.
#[derive(Debug, Clone)]
pub struct Listen {
    pub address: String,
    pub smtp: u16,
    pub submission: u16,
    /// Implicit TLS (`smtpd_tls_wrappermode = yes`): 465 as root, 2465 otherwise.
    pub smtps: u16,
    pub panel: String,
}

impl Listen {
    /// DESIGN §4: 25/587 as root, 2525/2587 otherwise; the panel on 8080.
    pub fn default_for(address: &str, as_root: bool) -> Listen {
        let (smtp, submission) = ports(as_root);
        Listen {
            address: address.to_string(),
            smtp,
            submission,
            smtps: if as_root { 465 } else { 2465 },
            panel: format!("{}:8080", bracket(address)),
        }
    }
}

fn bracket(addr: &str) -> String {
    if addr.contains(':') && !addr.starts_with('[') {
        format!("[{addr}]")
    } else {
        addr.to_string()
    }
}

/// Writes the configuration on first run. Returns `true` when it created the directory.
pub fn init(layout: &Layout, listen: &Listen) -> io::Result<bool> {
    if layout.etc.join("main.cf").exists() {
        return Ok(false);
    }
    for d in [
        &layout.data,
        &layout.etc,
        &layout.etc.join("tls"),
        &layout.etc.join("sqlite"),
        &layout.spool,
        &layout.mail,
    ] {
        std::fs::create_dir_all(d)?;
    }
    for (name, text) in SQLITE_TABLES {
        std::fs::write(
            layout.etc.join("sqlite").join(name),
            text.replace("@DBPATH@", &layout.db.display().to_string()),
        )?;
    }
    let (cert, key) = (
        layout.etc.join("tls").join("cert.pem"),
        layout.etc.join("tls").join("key.pem"),
    );
    crate::tls::self_signed(&system_hostname(), &cert, &key).map_err(io::Error::other)?;
    let t = |name: &str| format!("sqlite:{}", layout.etc.join("sqlite").join(name).display());
    let main_cf = format!(
        "# Written by `postern up` on first run; edit freely (postern postconf -e name=value).\n\
         # Postfix main.cf syntax and parameter names.\n\
         queue_directory = {spool}\n\
         postern_database_url = {db}\n\
         postern_panel_listen = {panel}\n\
         mynetworks = 127.0.0.0/8 [::1]/128\n\
         recipient_delimiter = +\n\
         virtual_mailbox_domains = {domains}\n\
         virtual_alias_maps = {alias}, {alias_domain}, {catchall}\n\
         virtual_mailbox_maps = {mailbox}, {alias_domain_mailbox}\n\
         relay_domains = {relay}\n\
         virtual_transport = virtual\n\
         virtual_mailbox_base = {mail}\n\
         # TLS: a self-signed certificate made on first run; replace it with a real one.\n\
         smtpd_tls_cert_file = {cert}\n\
         smtpd_tls_key_file = {key}\n\
         smtpd_tls_security_level = may\n\
         smtpd_tls_received_header = yes\n\
         # SMTP AUTH (enabled per service in master.cf): checked against the database.\n\
         smtpd_sasl_type = postern\n\
         postern_sasl_password_maps = {sasl}\n\
         smtpd_sender_login_maps = {senders}\n\
         smtpd_client_auth_rate_limit = 30\n\
         # Failed logins per account (from all clients) per anvil_rate_time_unit, then refused.\n\
         postern_sasl_account_failure_limit = 10\n",
        panel = listen.panel,
        spool = layout.spool.display(),
        db = layout.database_url(),
        domains = t("virtual_domains_maps.cf"),
        alias = t("virtual_alias_maps.cf"),
        alias_domain = t("virtual_alias_domain_maps.cf"),
        catchall = t("virtual_alias_domain_catchall_maps.cf"),
        mailbox = t("virtual_mailbox_maps.cf"),
        alias_domain_mailbox = t("virtual_alias_domain_mailbox_maps.cf"),
        relay = t("relay_domains.cf"),
        mail = layout.mail.display(),
        cert = cert.display(),
        key = key.display(),
        sasl = t("sasl_passwords.cf"),
        senders = t("sender_login_maps.cf"),
    );
    let (host, smtp, submission, smtps) = (
        bracket(&listen.address),
        listen.smtp,
        listen.submission,
        listen.smtps,
    );
    // Hosting-grade submission: TLS and AUTH required, the sender must belong to the login.
    let mua = "  -o smtpd_sasl_auth_enable=yes\n  -o smtpd_tls_auth_only=yes\n  \
               -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n  \
               -o smtpd_sender_restrictions=reject_sender_login_mismatch\n  \
               -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n";
    let master_cf = format!(
        "# Written by `postern up`. Postfix master.cf syntax.\n\
         # service type  private unpriv  chroot  wakeup  maxproc command + args\n\
         {host}:{smtp} inet n - n - - smtpd\n\
         {host}:{submission} inet n - n - - smtpd\n  -o syslog_name=postfix/submission\n  \
         -o smtpd_tls_security_level=encrypt\n{mua}\
         {host}:{smtps} inet n - n - - smtpd\n  -o syslog_name=postfix/smtps\n  \
         -o smtpd_tls_wrappermode=yes\n{mua}\
         virtual   unix  -       n       n       -       -       virtual\n\
         lmtp      unix  -       -       n       -       -       lmtp\n\
         smtp      unix  -       -       n       -       -       smtp\n\
         relay     unix  -       -       n       -       -       smtp\n\
         discard   unix  -       -       n       -       -       discard\n\
         error     unix  -       -       n       -       -       error\n\
         retry     unix  -       -       n       -       -       error\n"
    );
    write_new(&layout.etc.join("main.cf"), &main_cf)?;
    write_new(&layout.etc.join("master.cf"), &master_cf)?;
    Ok(true)
}

/// The host name for the certificate (the kernel's; `localhost` when unknown).
fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn write_new(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn first_run_writes_a_loadable_config_and_later_runs_reuse_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(&dir.path().join("data"));
        assert!(init(&layout, &Listen::default_for("127.0.0.1", false)).expect("init"));
        let (cfg, warnings) = Config::load(&layout.etc).expect("generated config loads");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(cfg.get("virtual_transport"), "virtual");
        assert_eq!(cfg.master().len(), 10);
        assert_eq!(cfg.master()[0].name, "127.0.0.1:2525");
        assert_eq!(cfg.master()[2].name, "127.0.0.1:2465");
        // Every smtpd service's settings are valid, the certificate loads.
        for svc in cfg.master().iter().filter(|s| s.kind == "inet") {
            let scfg = cfg.for_service(svc);
            let s = crate::smtpd::Settings::from_config(&scfg)
                .unwrap_or_else(|e| panic!("{}: {e}", svc.name));
            assert!(s.tls.server.is_some(), "{}", svc.name);
        }
        let smtps = cfg.for_service(&cfg.master()[2]);
        assert!(smtps.get_bool("smtpd_tls_wrappermode"));
        assert!(smtps.get_bool("smtpd_sasl_auth_enable"));
        let table = std::fs::read_to_string(layout.etc.join("sqlite/virtual_mailbox_maps.cf"))
            .expect("table");
        assert!(table.contains(&format!("dbpath = {}", layout.db.display())));
        std::fs::write(layout.etc.join("main.cf"), "myhostname = kept.example\n").expect("edit");
        assert!(!init(&layout, &Listen::default_for("127.0.0.1", false)).expect("init"));
        assert_eq!(
            std::fs::read_to_string(layout.etc.join("main.cf")).expect("read"),
            "myhostname = kept.example\n"
        );
    }
}
