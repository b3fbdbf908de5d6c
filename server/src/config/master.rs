//! master.cf (master(5)): the service table. Parses lines `service type private unpriv chroot
//! wakeup maxproc command args…` with indented continuations and `-o name=value` /
//! `-o { name = value }` overrides. Pure; which services run is decided by the caller.

/// One master.cf service line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// `smtp`, `submission`, `127.0.0.1:2525`, `lmtp`, `dovecot`, …
    pub name: String,
    /// `inet`, `unix`, `unix-dgram`, `fifo`, `pass`.
    pub kind: String,
    /// `-` or a number: the session limit for inet services.
    pub maxproc: Option<u32>,
    /// The daemon: `smtpd`, `lmtp`, `smtp`, `virtual`, `pipe`, `discard`, `error`, `qmgr`, …
    pub command: String,
    /// `-o name=value` overrides, in order.
    pub overrides: Vec<(String, String)>,
    /// Other arguments (e.g. `flags=…`, `argv=…` for pipe).
    pub args: Vec<String>,
    /// Line number where the service starts.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct MasterError {
    pub line: usize,
    pub message: String,
}

/// Parses master.cf text.
pub fn parse(text: &str) -> Result<Vec<Service>, MasterError> {
    // Join continuation lines first, remembering where each logical line began.
    let mut logical: Vec<(usize, String)> = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match logical.last_mut() {
                Some((_, prev)) => {
                    prev.push(' ');
                    prev.push_str(trimmed);
                }
                None => {
                    return Err(MasterError {
                        line: idx + 1,
                        message: "continuation line without a service line".into(),
                    });
                }
            }
        } else {
            logical.push((idx + 1, trimmed.to_string()));
        }
    }
    logical
        .into_iter()
        .map(|(line, text)| parse_service(line, &text))
        .collect()
}

fn parse_service(line: usize, text: &str) -> Result<Service, MasterError> {
    let words = tokenize(text);
    if words.len() < 8 {
        return Err(MasterError {
            line,
            message: format!(
                "expected at least 8 fields, found {}: \"{text}\"",
                words.len()
            ),
        });
    }
    let kind = words[1].clone();
    if !matches!(
        kind.as_str(),
        "inet" | "unix" | "unix-dgram" | "fifo" | "pass"
    ) {
        return Err(MasterError {
            line,
            message: format!("unknown service type \"{kind}\""),
        });
    }
    let maxproc = match words[6].as_str() {
        "-" => None,
        n => Some(n.parse::<u32>().map_err(|_| MasterError {
            line,
            message: format!("bad maxproc \"{n}\""),
        })?),
    };
    let mut overrides = Vec::new();
    let mut args = Vec::new();
    let mut rest = words[8..].iter();
    while let Some(w) = rest.next() {
        if w == "-o" {
            let Some(kv) = rest.next() else {
                return Err(MasterError {
                    line,
                    message: "-o without name=value".into(),
                });
            };
            let kv = kv
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .unwrap_or(kv);
            let Some((k, v)) = kv.split_once('=') else {
                return Err(MasterError {
                    line,
                    message: format!("-o {kv}: expected name=value"),
                });
            };
            overrides.push((k.trim().to_string(), v.trim().to_string()));
        } else if let Some(kv) = w.strip_prefix("-o").filter(|s| !s.is_empty()) {
            if let Some((k, v)) = kv.split_once('=') {
                overrides.push((k.trim().to_string(), v.trim().to_string()));
            }
        } else {
            args.push(w.clone());
        }
    }
    Ok(Service {
        name: words[0].clone(),
        kind,
        maxproc,
        command: words[7].clone(),
        overrides,
        args,
        line,
    })
}

/// Splits on white space, keeping `{ … }` groups (with their spaces) as one word.
fn tokenize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut level = 0usize;
    for ch in text.chars() {
        match ch {
            '{' => {
                level += 1;
                cur.push(ch);
            }
            '}' => {
                level = level.saturating_sub(1);
                cur.push(ch);
            }
            c if c.is_whitespace() && level == 0 => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_style_services() {
        let text = "\
# comment
smtp      inet  n       -       y       -       -       smtpd
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o { smtpd_recipient_restrictions = permit_sasl_authenticated, reject }
127.0.0.1:2525 inet n - n - 10 smtpd
lmtp      unix  -       -       y       -       -       lmtp
vacation  unix  -       n       n       -       -       pipe
  flags=Rq user=vacation argv=/usr/lib/postfixadmin/vacation.pl -f ${sender} -- ${recipient}
";
        let s = parse(text).expect("parses");
        assert_eq!(s.len(), 5);
        assert_eq!(
            s[1].overrides[0],
            ("syslog_name".into(), "postfix/submission".into())
        );
        assert_eq!(s[1].overrides[1].1, "permit_sasl_authenticated, reject");
        assert_eq!(s[2].name, "127.0.0.1:2525");
        assert_eq!(s[2].maxproc, Some(10));
        assert_eq!(s[4].command, "pipe");
        assert_eq!(s[4].args[0], "flags=Rq");
        assert_eq!(s[4].line, 8);
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("smtp inet n - y - - smtpd\nbad line\n").expect_err("must fail");
        assert_eq!(err.line, 2);
        let err = parse("smtp tcp n - y - - smtpd\n").expect_err("must fail");
        assert!(err.message.contains("unknown service type"));
    }
}
