//! postcat(1): prints queue files — by queue ID (`-q ID`, searched in incoming, active,
//! deferred, hold, maildrop, corrupt) or by path — as Postfix does: `*** ENVELOPE RECORDS …`,
//! `*** MESSAGE CONTENTS …`, `*** HEADER EXTRACTED …`, `*** MESSAGE FILE END …`, with `-e`
//! (envelope), `-h` (header) and `-b` (body) selecting sections (section markers are printed
//! when more than one section is shown). Content is printed with LF line ends. Read-only.

use std::io::Write;
use std::time::SystemTime;

use super::postqueue::{EX_NOINPUT, EX_OK, EX_SOFTWARE, EX_USAGE, load_config, open_store};
use crate::queue::codec;
use crate::queue::{Envelope, QueueError, QueueId};

/// What to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sections {
    pub envelope: bool,
    pub header: bool,
    pub body: bool,
}

/// Renders one decoded queue file. `name` is what the markers show (`deferred/ID` or a path).
pub fn render<Tz: chrono::TimeZone>(
    name: &str,
    env: &Envelope,
    content: &[u8],
    sections: Sections,
    tz: &Tz,
) -> String
where
    Tz::Offset: std::fmt::Display,
{
    use std::fmt::Write as _;
    let markers = [sections.envelope, sections.header, sections.body]
        .iter()
        .filter(|b| **b)
        .count()
        > 1;
    let mut s = String::new();
    let time = |t: SystemTime| {
        chrono::DateTime::<chrono::Utc>::from(t)
            .with_timezone(tz)
            .format("%a %b %e %H:%M:%S %Y")
            .to_string()
    };
    if sections.envelope {
        if markers {
            let _ = writeln!(s, "*** ENVELOPE RECORDS {name} ***");
        }
        let _ = writeln!(s, "message_size: {:>15}", content.len());
        let _ = writeln!(s, "message_arrival_time: {}", time(env.arrival));
        for (k, v) in &env.attrs {
            let _ = writeln!(s, "named_attribute: {k}={v}");
        }
        let _ = writeln!(s, "sender: {}", env.sender);
        for r in &env.recipients {
            if !r.original.is_empty() && r.original != r.address {
                let _ = writeln!(s, "original_recipient: {}", r.original);
            }
            let tag = if r.done {
                "done_recipient"
            } else {
                "recipient"
            };
            let _ = writeln!(s, "{tag}: {}", r.address);
        }
    }
    let text = String::from_utf8_lossy(content).replace("\r\n", "\n");
    let (header, body) = match text.find("\n\n") {
        Some(i) => (&text[..i + 1], &text[i + 2..]),
        None if text.starts_with('\n') => ("", &text[1..]),
        None => (text.as_str(), ""),
    };
    if sections.header {
        if markers {
            let _ = writeln!(s, "*** MESSAGE CONTENTS {name} ***");
        }
        s.push_str(header);
    }
    if sections.body {
        if markers {
            if !sections.header {
                let _ = writeln!(s, "*** MESSAGE CONTENTS {name} ***");
            }
            s.push('\n');
        }
        s.push_str(body);
        if !body.is_empty() && !body.ends_with('\n') {
            s.push('\n');
        }
    }
    if markers {
        let _ = writeln!(s, "*** HEADER EXTRACTED {name} ***");
        let _ = writeln!(s, "*** MESSAGE FILE END {name} ***");
    }
    s
}

/// Runs postcat; returns the exit status.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match run_inner(args, out, err) {
        Ok(code) => code,
        Err((code, msg)) => {
            let _ = writeln!(err, "postcat: fatal: {msg}");
            code
        }
    }
}

fn run_inner(
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, (i32, String)> {
    let (opts, operands) = super::getopt(args, "bc:dehoqrsv").map_err(|e| (EX_USAGE, e))?;
    let mut dir = None;
    let mut by_id = false;
    let mut sections = Sections {
        envelope: false,
        header: false,
        body: false,
    };
    for (c, v) in opts {
        match c {
            'c' => dir = v,
            'q' => by_id = true,
            'e' => sections.envelope = true,
            'h' => sections.header = true,
            'b' => sections.body = true,
            _ => {}
        }
    }
    if !(sections.envelope || sections.header || sections.body) {
        sections = Sections {
            envelope: true,
            header: true,
            body: true,
        };
    }
    if operands.is_empty() {
        return Err((
            EX_USAGE,
            "usage: postcat [-bdehoqv] [-c config_dir] [files...]".into(),
        ));
    }
    let write = |out: &mut dyn Write, text: String| {
        out.write_all(text.as_bytes())
            .map_err(|e| (EX_SOFTWARE, format!("write: {e}")))
    };
    if by_id {
        let cfg = load_config("postcat", dir, err)?;
        let store = open_store(&cfg)?;
        for arg in &operands {
            let missing = || {
                (
                    EX_NOINPUT,
                    format!("open queue file {arg}: No such file or directory"),
                )
            };
            let id = QueueId::parse(arg).ok_or_else(missing)?;
            let m = match store.load(&id) {
                Ok(m) => m,
                Err(QueueError::NotFound { .. }) => return Err(missing()),
                Err(e) => return Err((EX_SOFTWARE, e.to_string())),
            };
            let name = format!("{}/{id}", m.queue.dir_name());
            write(
                out,
                render(&name, &m.envelope, &m.content, sections, &chrono::Local),
            )?;
        }
    } else {
        for path in &operands {
            let bytes =
                std::fs::read(path).map_err(|e| (EX_NOINPUT, format!("open {path}: {e}")))?;
            let (f, _) = codec::decode(&bytes)
                .map_err(|e| (EX_SOFTWARE, format!("{path}: not a queue file: {e}")))?;
            write(
                out,
                render(path, &f.envelope, &f.content, sections, &chrono::Local),
            )?;
        }
    }
    Ok(EX_OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Recipient;
    use std::time::{Duration, UNIX_EPOCH};

    fn env() -> Envelope {
        let mut done = Recipient::new("a@x.test");
        done.done = true;
        let mut e = Envelope::new(
            "s@x.test",
            vec![done, Recipient::with_original("b@x.test", "list@x.test")],
            UNIX_EPOCH + Duration::from_secs(1_764_000_000),
        );
        e.attrs.push(("client_address".into(), "127.0.0.1".into()));
        e
    }

    const ALL: Sections = Sections {
        envelope: true,
        header: true,
        body: true,
    };

    #[test]
    fn full_listing() {
        let got = render(
            "deferred/ABCDEF123456",
            &env(),
            b"Subject: hi\r\nFrom: s@x.test\r\n\r\nline 1\r\nline 2\r\n",
            ALL,
            &chrono::Utc,
        );
        assert_eq!(
            got,
            "*** ENVELOPE RECORDS deferred/ABCDEF123456 ***\n\
             message_size:              47\n\
             message_arrival_time: Mon Nov 24 16:00:00 2025\n\
             named_attribute: client_address=127.0.0.1\n\
             sender: s@x.test\n\
             done_recipient: a@x.test\n\
             original_recipient: list@x.test\n\
             recipient: b@x.test\n\
             *** MESSAGE CONTENTS deferred/ABCDEF123456 ***\n\
             Subject: hi\n\
             From: s@x.test\n\
             \n\
             line 1\n\
             line 2\n\
             *** HEADER EXTRACTED deferred/ABCDEF123456 ***\n\
             *** MESSAGE FILE END deferred/ABCDEF123456 ***\n"
        );
    }

    #[test]
    fn header_or_body_only_have_no_markers() {
        let msg = b"Subject: hi\r\n\r\nbody\r\n";
        let only = |header, body| Sections {
            envelope: false,
            header,
            body,
        };
        assert_eq!(
            render("x", &env(), msg, only(true, false), &chrono::Utc),
            "Subject: hi\n"
        );
        assert_eq!(
            render("x", &env(), msg, only(false, true), &chrono::Utc),
            "body\n"
        );
    }
}
