//! One AUTH exchange as smtpd's driver sees it: `Authenticator::start(mech, initial)` gives the
//! first `AuthStep` and, while the step is a challenge, a `Conversation` to feed the client's
//! next line to (`Conversation::respond`). smtpd's session stays pure: it only relays steps
//! (`334 <challenge>`, `235`, `535`, `454`) and the driver (smtpd/conn.rs) calls these.
//!
//! Backends:
//! * Dovecot: relayed step by step (`dovecot::Request`), with Dovecot's mechanisms.
//! * built in (`smtpd_sasl_type = postern`, `postern_sasl_mechanisms`): PLAIN/LOGIN collect the
//!   credentials with the pure `Exchange` and go through `Authenticator::authenticate` (password
//!   tables, the per-account failure limit); CRAM-MD5 (`cram_md5`) and SCRAM-SHA-1/-256 (`scram`)
//!   ask the table for the stored hashes and need one that can serve them (`secret`): a
//!   cleartext `{PLAIN}` secret, or Dovecot's `{SCRAM-*}` keys for SCRAM. An account without one
//!   fails exactly like a wrong password (535), and the log says why. SCRAM with an unknown user or
//!   an unusable secret still answers the first message (with made-up salt), so the reply sequence
//!   does not tell which logins exist.
//!
//! Randomness and time come from here (`rand`, the clock) into the pure mechanism code.
//! Does not: speak SMTP or log passwords.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::secret::Secret;
use super::{
    AuthContext, Authenticator, Checker, Exchange, MechInfo, Mechanism, Outcome, SaslSettings,
    Step, cram_md5, dovecot, scram,
};

/// What the backend answers to one step of the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send `334 <this>` (base64, may be empty) and relay the client's next line.
    Challenge(String),
    /// `235 2.7.0 Authentication successful` as this login name.
    Ok(String),
    /// `535 5.7.8 Error: authentication failed: <reason>`; `user` for the log when known.
    Fail {
        reason: String,
        user: Option<String>,
    },
    /// `454 4.7.0 Temporary authentication failure: <reason>`.
    Temp {
        reason: String,
        user: Option<String>,
    },
}

impl AuthStep {
    pub fn temp(reason: &str) -> AuthStep {
        AuthStep::Temp {
            reason: reason.into(),
            user: None,
        }
    }

    fn fail(reason: &str, user: Option<&str>) -> AuthStep {
        AuthStep::Fail {
            reason: reason.into(),
            user: user.map(str::to_string),
        }
    }
}

/// The reply a wrong password gets (Postfix 3.7.11+: Dovecot gave no reason).
const UNAVAILABLE: &str = "(reason unavailable)";

/// An exchange waiting for the client's next line.
pub struct Conversation {
    inner: Inner,
}

enum Inner {
    Dovecot(dovecot::Request),
    Builtin(Builtin),
}

enum Builtin {
    /// PLAIN / LOGIN.
    Exchange(Exchange),
    Cram {
        challenge: String,
    },
    /// SCRAM without an initial response: the client-first message comes next.
    ScramFirst(scram::Hash),
    ScramFinal(Box<ScramFinal>),
    /// The server-final message went out; the client's (empty) line ends the exchange.
    ScramDone {
        login: String,
    },
}

struct ScramFinal {
    hash: scram::Hash,
    first: scram::ClientFirst,
    server_first: String,
    keys: scram::Keys,
    login: String,
    /// Why this login cannot succeed whatever the proof (unknown, no usable secret, blocked).
    refused: Option<String>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn decode(b64: &str) -> Result<Vec<u8>, ()> {
    if b64 == "=" {
        return Ok(Vec::new());
    }
    B64.decode(b64.trim()).map_err(|_| ())
}

impl Authenticator {
    /// The mechanisms the backend offers now (before the security options): Dovecot's handshake
    /// (PLAIN LOGIN while it has never been reachable), or `postern_sasl_mechanisms`.
    pub async fn mechanisms(&self, s: &SaslSettings) -> Vec<MechInfo> {
        match &self.checker {
            Checker::Dovecot(c) => c
                .mechanisms()
                .await
                .unwrap_or_else(|| vec![Mechanism::Plain.info(), Mechanism::Login.info()]),
            Checker::Postern(_) => s.builtin_mechanisms(),
        }
    }

    /// `AUTH <mech> [initial-response]` (mechanism already checked against what was offered,
    /// the initial response already checked to be base64 or `=`).
    pub async fn start(
        &self,
        mech: &str,
        initial: Option<&str>,
        ctx: &AuthContext,
    ) -> (Option<Conversation>, AuthStep) {
        let step = match &self.checker {
            Checker::Dovecot(c) => {
                let (req, step) = c.start(mech, initial, ctx).await;
                let step = self.dovecot_verdict(step, ctx);
                return (
                    req.map(|r| Conversation {
                        inner: Inner::Dovecot(r),
                    }),
                    step,
                );
            }
            Checker::Postern(_) => self.builtin_start(mech, initial, ctx).await,
        };
        match step {
            (Some(b), step @ AuthStep::Challenge(_)) => (
                Some(Conversation {
                    inner: Inner::Builtin(b),
                }),
                step,
            ),
            (_, step) => (None, step),
        }
    }

    /// The per-account failure limit around Dovecot's verdict (Dovecot names the login only at
    /// the end): a failure counts for `user=`, and a blocked login's success becomes a failure.
    fn dovecot_verdict(&self, step: AuthStep, ctx: &AuthContext) -> AuthStep {
        match step {
            AuthStep::Ok(user) if self.account_blocked(&user, ctx) => AuthStep::Fail {
                reason: UNAVAILABLE.into(),
                user: Some(user),
            },
            AuthStep::Fail {
                reason,
                user: Some(u),
            } => {
                self.account_failed(&u.to_lowercase());
                AuthStep::Fail {
                    reason,
                    user: Some(u),
                }
            }
            s => s,
        }
    }

    fn account_blocked(&self, login: &str, ctx: &AuthContext) -> bool {
        let blocked = super::account_failures()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .blocked(login, now_secs(), self.unit, self.account_limit);
        if blocked {
            tracing::warn!(
                "{}: SASL account failure limit exceeded: {} failures within {}s, sasl_username={login}",
                ctx.client,
                self.account_limit,
                self.unit
            );
        }
        blocked
    }

    fn account_failed(&self, login: &str) {
        if self.account_limit > 0 {
            super::account_failures()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .failed(login, now_secs(), self.unit);
        }
    }

    async fn builtin_start(
        &self,
        mech: &str,
        initial: Option<&str>,
        ctx: &AuthContext,
    ) -> (Option<Builtin>, AuthStep) {
        let Some(m) = Mechanism::parse(mech) else {
            return (
                None,
                AuthStep::fail("Invalid authentication mechanism", None),
            );
        };
        match m {
            Mechanism::Plain | Mechanism::Login => {
                let (ex, step) = Exchange::start(m, initial);
                let step = self.exchange_step(step, ctx).await;
                let more = matches!(step, AuthStep::Challenge(_));
                (more.then_some(Builtin::Exchange(ex)), step)
            }
            Mechanism::CramMd5 => {
                if initial.is_some_and(|i| i != "=") {
                    return (
                        None,
                        AuthStep::fail("Invalid authentication mechanism", None),
                    );
                }
                let challenge = cram_md5::challenge(
                    rand::random::<u64>() >> 1,
                    now_secs() as i64,
                    &ctx.myhostname,
                );
                let step = AuthStep::Challenge(B64.encode(&challenge));
                (Some(Builtin::Cram { challenge }), step)
            }
            Mechanism::ScramSha1 | Mechanism::ScramSha256 => {
                let h = if m == Mechanism::ScramSha1 {
                    scram::Hash::Sha1
                } else {
                    scram::Hash::Sha256
                };
                match initial {
                    None => (
                        Some(Builtin::ScramFirst(h)),
                        AuthStep::Challenge(String::new()),
                    ),
                    Some(ir) => match decode(ir) {
                        Ok(msg) => self.scram_first(h, &msg, ctx).await,
                        Err(()) => (
                            None,
                            AuthStep::fail("Invalid base64 data in initial response", None),
                        ),
                    },
                }
            }
        }
    }

    /// PLAIN/LOGIN: a challenge, or the credentials checked by `authenticate`.
    async fn exchange_step(&self, step: Step, ctx: &AuthContext) -> AuthStep {
        match step {
            Step::Challenge(c) => AuthStep::Challenge(c),
            Step::Invalid(why) => AuthStep::fail(why, None),
            Step::Done(creds) => {
                let user = Some(creds.username.clone());
                match self.authenticate(&creds, ctx).await {
                    Outcome::Ok(u) => AuthStep::Ok(u),
                    Outcome::Fail(reason) => AuthStep::Fail { reason, user },
                    Outcome::Temp(reason) => AuthStep::Temp { reason, user },
                }
            }
        }
    }

    /// The stored secrets of `login`, parsed; `Err` is a table failure.
    async fn secrets(&self, login: &str) -> Result<Option<Vec<Secret>>, AuthStep> {
        let Checker::Postern(t) = &self.checker else {
            return Err(AuthStep::temp("Authentication backend error"));
        };
        match t.stored_hashes(login).await {
            Ok(found) => Ok(found.map(|hs| hs.iter().map(|h| Secret::parse(h)).collect())),
            Err(reason) => Err(AuthStep::Temp {
                reason,
                user: Some(login.to_string()),
            }),
        }
    }

    fn login_name(&self, username: &str) -> String {
        match &self.checker {
            Checker::Postern(t) => t.login_name(username),
            Checker::Dovecot(_) => username.to_lowercase(),
        }
    }

    async fn cram_response(&self, challenge: &str, msg: &[u8], ctx: &AuthContext) -> AuthStep {
        let Some(resp) = cram_md5::Response::parse(msg) else {
            return AuthStep::fail("Invalid authentication mechanism", None);
        };
        let login = self.login_name(&resp.username);
        if self.account_blocked(&login, ctx) {
            return AuthStep::fail(UNAVAILABLE, Some(&resp.username));
        }
        let secrets = match self.secrets(&login).await {
            Ok(s) => s,
            Err(step) => return step,
        };
        let Some(secrets) = secrets else {
            self.account_failed(&login);
            return AuthStep::fail(UNAVAILABLE, Some(&resp.username));
        };
        let clear: Vec<&[u8]> = secrets
            .iter()
            .filter_map(|s| match s {
                Secret::Cleartext(p) => Some(p.as_slice()),
                _ => None,
            })
            .collect();
        if clear.is_empty() {
            tracing::warn!(
                "{}: SASL CRAM-MD5: no cleartext secret stored for {login} (stored: {}); CRAM-MD5 needs {{PLAIN}}",
                ctx.client,
                schemes(&secrets)
            );
            return AuthStep::fail(UNAVAILABLE, Some(&resp.username));
        }
        // No short cut: every candidate is checked.
        let ok = clear
            .iter()
            .fold(false, |ok, pw| resp.matches(challenge, pw) | ok);
        if ok {
            AuthStep::Ok(login)
        } else {
            self.account_failed(&login);
            AuthStep::fail(UNAVAILABLE, Some(&resp.username))
        }
    }

    async fn scram_first(
        &self,
        h: scram::Hash,
        msg: &[u8],
        ctx: &AuthContext,
    ) -> (Option<Builtin>, AuthStep) {
        let first = match scram::ClientFirst::parse(msg) {
            Ok(f) => f,
            Err(e) => return (None, AuthStep::fail(e.text(), None)),
        };
        let login = self.login_name(&first.username);
        let mut refused = None;
        let mut keys = None;
        if self.account_blocked(&login, ctx) {
            refused = Some("account failure limit".to_string());
        } else {
            match self.secrets(&login).await {
                Err(step) => return (None, step),
                Ok(None) => refused = Some("unknown user".into()),
                Ok(Some(secrets)) => {
                    keys = secrets.iter().find_map(|s| match s {
                        Secret::Scram(sh, k) if *sh == h => Some(k.clone()),
                        Secret::Cleartext(pw) => {
                            let salt: [u8; 16] = rand::random();
                            Some(scram::Keys::from_password(h, pw, &salt, scram::ITERATIONS))
                        }
                        _ => None,
                    });
                    if keys.is_none() {
                        let why = format!(
                            "no secret usable for {} stored (stored: {}); it needs {{PLAIN}} or {{{}}}",
                            mech_name(h),
                            schemes(&secrets),
                            mech_name(h)
                        );
                        tracing::warn!("{}: SASL {}: {login}: {why}", ctx.client, mech_name(h));
                        refused = Some(why);
                    }
                }
            }
        }
        let keys = keys.unwrap_or_else(|| {
            // Made-up keys: the exchange goes on and fails at the proof, like a wrong password.
            let salt: [u8; 16] = rand::random();
            let pw: [u8; 16] = rand::random();
            scram::Keys::from_password(h, &pw, &salt, scram::ITERATIONS)
        });
        let nonce: [u8; 18] = rand::random();
        let server_first = scram::server_first(&first, &B64.encode(nonce), &keys);
        let step = AuthStep::Challenge(B64.encode(&server_first));
        (
            Some(Builtin::ScramFinal(Box::new(ScramFinal {
                hash: h,
                first,
                server_first,
                keys,
                login,
                refused,
            }))),
            step,
        )
    }
}

fn mech_name(h: scram::Hash) -> &'static str {
    match h {
        scram::Hash::Sha1 => "SCRAM-SHA-1",
        scram::Hash::Sha256 => "SCRAM-SHA-256",
    }
}

/// The stored schemes, for a log line (never the secrets).
fn schemes(secrets: &[Secret]) -> String {
    let names: Vec<String> = secrets
        .iter()
        .map(|s| match s {
            Secret::Cleartext(_) => "PLAIN".to_string(),
            Secret::Scram(h, _) => mech_name(*h).to_string(),
            Secret::Other(n) => n.clone(),
        })
        .collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

impl Conversation {
    /// The client's answer to the last challenge (the line as sent, not `*`: smtpd handles that).
    /// A step other than `Challenge` ends the conversation.
    pub async fn respond(
        &mut self,
        auth: &Authenticator,
        line: &str,
        ctx: &AuthContext,
    ) -> AuthStep {
        match &mut self.inner {
            Inner::Dovecot(req) => {
                let step = req.respond(line).await;
                auth.dovecot_verdict(step, ctx)
            }
            Inner::Builtin(b) => {
                let (next, step) = b.respond(auth, line, ctx).await;
                if let Some(n) = next {
                    *b = n;
                }
                step
            }
        }
    }
}

impl Builtin {
    async fn respond(
        &mut self,
        auth: &Authenticator,
        line: &str,
        ctx: &AuthContext,
    ) -> (Option<Builtin>, AuthStep) {
        if let Builtin::Exchange(ex) = self {
            let step = ex.respond(line);
            return (None, auth.exchange_step(step, ctx).await);
        }
        let Ok(msg) = decode(line) else {
            return (
                None,
                AuthStep::fail("Invalid base64 data in continued response", None),
            );
        };
        match self {
            Builtin::Exchange(_) => (None, AuthStep::temp("Authentication backend error")),
            Builtin::Cram { challenge } => (None, auth.cram_response(challenge, &msg, ctx).await),
            Builtin::ScramFirst(h) => auth.scram_first(*h, &msg, ctx).await,
            Builtin::ScramFinal(f) => {
                let user = Some(f.first.username.as_str());
                match scram::verify_final(f.hash, &f.first, &f.server_first, &f.keys, &msg) {
                    Ok(server_final) if f.refused.is_none() => (
                        Some(Builtin::ScramDone {
                            login: f.login.clone(),
                        }),
                        AuthStep::Challenge(B64.encode(server_final)),
                    ),
                    Ok(_) | Err(scram::Failure::BadProof) => {
                        auth.account_failed(&f.login);
                        (None, AuthStep::fail(UNAVAILABLE, user))
                    }
                    Err(e) => (None, AuthStep::fail(e.text(), user)),
                }
            }
            Builtin::ScramDone { login } => (None, AuthStep::Ok(login.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::table::PasswordTable;

    /// The built-in backend over one `texthash:` table (`login hash[,hash…]` lines).
    fn authenticator(dir: &std::path::Path, rows: &str) -> Authenticator {
        let file = dir.join("passwords");
        std::fs::write(&file, rows).expect("write");
        let maps = crate::maps::Maps::with_cache(dir, std::time::Duration::ZERO);
        let list = maps
            .open_list(&format!("texthash:{}", file.display()))
            .expect("open");
        Authenticator {
            checker: Checker::Postern(PasswordTable::new(list, String::new())),
            account_limit: 0,
            unit: 60,
        }
    }

    fn ctx() -> AuthContext {
        AuthContext {
            client: "192.0.2.1".parse().expect("ip"),
            local: None,
            tls: true,
            service: "smtp".into(),
            myhostname: "mx.test".into(),
        }
    }

    fn b64(s: &str) -> String {
        B64.encode(s)
    }

    fn unb64(s: &str) -> String {
        String::from_utf8(B64.decode(s).expect("base64")).expect("utf8")
    }

    const ROWS: &str = "conv-ann@x.test {PLAIN}ann-pw,{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$x$y\n\
        conv-bob@x.test {SHA512-CRYPT}$6$salt$hash\n\
        conv-eve@x.test {SCRAM-SHA-256}4096,C1XrVtjAC+683Zr1HwIy2A==,4IgWr2k5I48/ewL6+PlQ71nSlVLg1lDKbj303oRZIrI=,j8/YT1Ns4WdcusBPNyd82bHD0lZMS7wMQgViSdMRQDc=\n";

    async fn cram(auth: &Authenticator, user: &str, pw: &str) -> AuthStep {
        let (conv, step) = auth.start("CRAM-MD5", None, &ctx()).await;
        let AuthStep::Challenge(c) = step else {
            panic!("no challenge: {step:?}");
        };
        let challenge = unb64(&c);
        assert!(
            challenge.starts_with('<') && challenge.ends_with("@mx.test>"),
            "{challenge}"
        );
        let digest = hex::encode(cram_md5::digest(&challenge, pw.as_bytes()));
        let mut conv = conv.expect("conversation");
        conv.respond(auth, &b64(&format!("{user} {digest}")), &ctx())
            .await
    }

    #[tokio::test]
    async fn cram_md5_needs_a_cleartext_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = authenticator(dir.path(), ROWS);
        assert_eq!(
            cram(&auth, "conv-ann@x.test", "ann-pw").await,
            AuthStep::Ok("conv-ann@x.test".into())
        );
        let fail = |u: &str| AuthStep::Fail {
            reason: UNAVAILABLE.into(),
            user: Some(u.into()),
        };
        for (user, pw) in [
            ("conv-ann@x.test", "wrong"),
            ("conv-bob@x.test", "bob-pw"),
            ("conv-nobody@x.test", "x"),
        ] {
            assert_eq!(cram(&auth, user, pw).await, fail(user), "{user}");
        }
        // CRAM-MD5 has no initial response.
        let (conv, step) = auth.start("CRAM-MD5", Some("dGlt"), &ctx()).await;
        assert!(conv.is_none());
        assert_eq!(
            step,
            AuthStep::fail("Invalid authentication mechanism", None)
        );
    }

    /// SCRAM-SHA-256 from a `{PLAIN}` secret and from Dovecot's stored keys (password "pencil"),
    /// with and without an initial response; unknown users and unusable secrets get a
    /// server-first message and fail at the proof; channel binding is refused.
    #[tokio::test]
    async fn scram_exchanges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = authenticator(dir.path(), ROWS);
        let h = scram::Hash::Sha256;
        for (user, pw, initial, ok) in [
            ("conv-ann@x.test", "ann-pw", true, true),
            ("conv-ann@x.test", "ann-pw", false, true),
            ("conv-eve@x.test", "pencil", true, true),
            ("conv-eve@x.test", "pencil2", true, false),
            ("conv-bob@x.test", "bob-pw", true, false),
            ("conv-nobody@x.test", "x", true, false),
        ] {
            let bare = format!("n={user},r=clientnonce123");
            let first = format!("n,,{bare}");
            let (conv, step) = if initial {
                auth.start("SCRAM-SHA-256", Some(&b64(&first)), &ctx())
                    .await
            } else {
                let (conv, step) = auth.start("SCRAM-SHA-256", None, &ctx()).await;
                assert_eq!(step, AuthStep::Challenge(String::new()));
                let mut conv = conv.expect("conversation");
                let step = conv.respond(&auth, &b64(&first), &ctx()).await;
                (Some(conv), step)
            };
            let AuthStep::Challenge(sf) = step else {
                panic!("{user}: no server-first: {step:?}");
            };
            let sf = unb64(&sf);
            assert!(sf.starts_with("r=clientnonce123"), "{sf}");
            let (client_final, server_final) =
                scram::client_final(h, pw.as_bytes(), &bare, &sf, "n,,").expect("client");
            let mut conv = conv.expect("conversation");
            let step = conv.respond(&auth, &b64(&client_final), &ctx()).await;
            if ok {
                assert_eq!(step, AuthStep::Challenge(b64(&server_final)), "{user}");
                assert_eq!(
                    conv.respond(&auth, "", &ctx()).await,
                    AuthStep::Ok(user.into())
                );
            } else {
                assert_eq!(
                    step,
                    AuthStep::Fail {
                        reason: UNAVAILABLE.into(),
                        user: Some(user.into())
                    },
                    "{user}"
                );
            }
        }
        let (conv, step) = auth
            .start(
                "SCRAM-SHA-256",
                Some(&b64("p=tls-unique,,n=conv-ann@x.test,r=abc")),
                &ctx(),
            )
            .await;
        assert!(conv.is_none());
        assert_eq!(
            step,
            AuthStep::fail("channel binding is not supported", None)
        );
    }

    #[tokio::test]
    async fn plain_and_login_go_through_authenticate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = authenticator(dir.path(), ROWS);
        let (conv, step) = auth
            .start("PLAIN", Some(&b64("\0conv-ann@x.test\0ann-pw")), &ctx())
            .await;
        assert!(conv.is_none());
        assert_eq!(step, AuthStep::Ok("conv-ann@x.test".into()));
        let (conv, step) = auth.start("LOGIN", None, &ctx()).await;
        assert_eq!(step, AuthStep::Challenge(b64("Username:")));
        let mut conv = conv.expect("conversation");
        assert_eq!(
            conv.respond(&auth, &b64("conv-ann@x.test"), &ctx()).await,
            AuthStep::Challenge(b64("Password:"))
        );
        assert_eq!(
            conv.respond(&auth, &b64("nope"), &ctx()).await,
            AuthStep::Fail {
                reason: UNAVAILABLE.into(),
                user: Some("conv-ann@x.test".into())
            }
        );
    }
}
