//! postconf(1): print parameters (`-d` defaults, `-n` only what main.cf sets, `-h` values only,
//! `-x` expanded, named parameters) and edit main.cf (`-e name=value`), honouring `-c` and
//! `MAIL_CONFIG`. Writes only main.cf, and only with `-e`.

use std::io::Write;

use crate::config::{self, Config, PARAMS};

/// Runs postconf; returns the exit status.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match run_inner(args, out, err) {
        Ok(code) => code,
        Err(msg) => {
            let _ = writeln!(err, "postconf: fatal: {msg}");
            1
        }
    }
}

fn run_inner(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> Result<i32, String> {
    let (opts, names) = super::getopt(args, "c:dehnx")?;
    let mut dir = None;
    let (mut defaults, mut edit, mut no_names, mut only_set, mut expand) =
        (false, false, false, false, false);
    for (c, v) in opts {
        match c {
            'c' => dir = v,
            'd' => defaults = true,
            'e' => edit = true,
            'h' => no_names = true,
            'n' => only_set = true,
            'x' => expand = true,
            _ => {}
        }
    }
    let dir = super::config_dir(dir);
    if edit {
        let path = dir.join("main.cf");
        let mut text =
            std::fs::read_to_string(&path).map_err(|e| format!("open {}: {e}", path.display()))?;
        for nv in &names {
            let Some((n, v)) = nv.split_once('=') else {
                return Err(format!("-e: expected name=value, found \"{nv}\""));
            };
            text = config::maincf::edit(&text, n.trim(), v.trim());
        }
        let tmp = path.with_extension("cf.tmp");
        std::fs::write(&tmp, &text).map_err(|e| format!("write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("rename {}: {e}", path.display()))?;
        return Ok(0);
    }
    let cfg = if defaults {
        None
    } else {
        let (cfg, warnings) = Config::load(&dir).map_err(|e| e.to_string())?;
        for w in warnings {
            let _ = writeln!(err, "postconf: warning: {}", w.0);
        }
        Some(cfg)
    };
    let print = |out: &mut dyn Write, name: &str, value: &str| {
        let _ = if no_names {
            writeln!(out, "{value}")
        } else if value.is_empty() {
            writeln!(out, "{name} =")
        } else {
            writeln!(out, "{name} = {value}")
        };
    };
    let value_of = |name: &str| -> Option<String> {
        match &cfg {
            None => config::params::lookup(name).map(|p| p.default.to_string()),
            Some(c) if expand => c.raw(name).map(|_| c.get(name)),
            Some(c) => c.raw(name),
        }
    };
    if !names.is_empty() {
        let mut status = 0;
        for n in &names {
            match value_of(n) {
                Some(v)
                    if config::params::lookup(n).is_some()
                        || cfg.as_ref().is_some_and(|c| c.is_set(n)) =>
                {
                    print(out, n, &v)
                }
                _ => {
                    let _ = writeln!(err, "postconf: warning: {n}: unknown parameter");
                    status = 0;
                }
            }
        }
        return Ok(status);
    }
    match (&cfg, only_set) {
        (Some(c), true) => {
            for (n, v) in c.explicit() {
                let v = if expand { c.get(n) } else { v.to_string() };
                print(out, n, &v);
            }
        }
        _ => {
            for p in PARAMS {
                if let Some(v) = value_of(p.name) {
                    print(out, p.name, &v);
                }
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_in(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
        let mut a = vec!["-c".to_string(), dir.display().to_string()];
        a.extend(args.iter().map(|s| s.to_string()));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&a, &mut out, &mut err);
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    #[test]
    fn prints_edits_and_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("main.cf"),
            "# mine\nmyhostname = mx.example.com\nbogus = 1\n",
        )
        .expect("write");
        let (code, out, err) = run_in(dir.path(), &["-n"]);
        assert_eq!(code, 0);
        assert_eq!(out, "bogus = 1\nmyhostname = mx.example.com\n");
        assert!(err.contains("line 3") && err.contains("bogus"), "{err}");

        let (_, out, _) = run_in(dir.path(), &["mydomain", "smtpd_banner"]);
        assert_eq!(
            out,
            "mydomain = example.com\nsmtpd_banner = $myhostname ESMTP $mail_name\n"
        );
        let (_, out, _) = run_in(dir.path(), &["-xh", "smtpd_banner"]);
        assert_eq!(out, "mx.example.com ESMTP Postern\n");

        let (code, _, _) = run_in(
            dir.path(),
            &[
                "-e",
                "myhostname=mail.example.org",
                "message_size_limit = 5000",
            ],
        );
        assert_eq!(code, 0);
        let text = std::fs::read_to_string(dir.path().join("main.cf")).expect("read");
        assert_eq!(
            text,
            "# mine\nmyhostname = mail.example.org\nbogus = 1\nmessage_size_limit = 5000\n"
        );

        let (_, out, _) = run_in(dir.path(), &["-d", "message_size_limit"]);
        assert_eq!(out, "message_size_limit = 10240000\n");
        let (_, out, _) = run_in(dir.path(), &["-d"]);
        assert_eq!(out.lines().count(), PARAMS.len());
    }

    #[test]
    fn bad_value_names_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("main.cf"),
            "\n\nsmtpd_helo_required = sometimes\n",
        )
        .expect("write");
        let (code, _, err) = run_in(dir.path(), &["-n"]);
        assert_eq!(code, 1);
        assert!(
            err.contains("main.cf, line 3") && err.contains("smtpd_helo_required"),
            "{err}"
        );
    }
}
