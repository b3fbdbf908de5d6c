//! postmap(1): `-q KEY TYPE:NAME` (exit 0 and the value; exit 1 when not found; a failed
//! lookup prints an error and exits 75, EX_TEMPFAIL), `-q -` (keys on stdin, `key value`
//! lines), and `TYPE:NAME` alone to check a table file. Keys are lower-cased unless `-f`.

use std::io::{BufRead, Write};

use crate::config::Config;
use crate::maps::{MapError, Maps};

/// Exit status for a lookup that failed (not "not found").
pub const EXIT_LOOKUP_FAILED: i32 = 75;

pub async fn run(
    args: &[String],
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let (opts, operands) = match super::getopt(args, "c:fq:") {
        Ok(v) => v,
        Err(e) => {
            let _ = writeln!(err, "postmap: fatal: {e}");
            return 1;
        }
    };
    let mut dir = None;
    let mut query = None;
    let mut fold = true;
    for (c, v) in opts {
        match c {
            'c' => dir = v,
            'f' => fold = false,
            'q' => query = v,
            _ => {}
        }
    }
    let dir = super::config_dir(dir);
    let cfg = match Config::load(&dir) {
        Ok((c, _)) => c,
        // postmap works without a main.cf for file tables: use defaults.
        Err(_) => match Config::from_text(&dir, "", "") {
            Ok((c, _)) => c,
            Err(e) => {
                let _ = writeln!(err, "postmap: fatal: {e}");
                return 1;
            }
        },
    };
    let maps = Maps::new(&cfg);
    let Some(spec) = operands.first() else {
        let _ = writeln!(
            err,
            "postmap: fatal: usage: postmap [-c dir] [-f] [-q key] type:name"
        );
        return 1;
    };
    let table = match maps.open(spec) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "postmap: fatal: {e}");
            return 1;
        }
    };
    let Some(key) = query else {
        // Building: file tables are read from their source; opening it checked the syntax.
        return 0;
    };
    let fold_key = |k: &str| {
        if fold {
            k.to_lowercase()
        } else {
            k.to_string()
        }
    };
    if key != "-" {
        return match table.lookup(&fold_key(&key)).await {
            Ok(Some(v)) => {
                let _ = writeln!(out, "{v}");
                0
            }
            Ok(None) => 1,
            Err(e) => report(err, &e),
        };
    }
    let mut status = 1;
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = writeln!(err, "postmap: fatal: read standard input: {e}");
                return 1;
            }
        }
        let k = line.trim();
        if k.is_empty() {
            continue;
        }
        match table.lookup(&fold_key(k)).await {
            Ok(Some(v)) => {
                let _ = writeln!(out, "{k}\t{v}");
                status = 0;
            }
            Ok(None) => {}
            Err(e) => return report(err, &e),
        }
    }
    status
}

fn report(err: &mut dyn Write, e: &MapError) -> i32 {
    let _ = writeln!(err, "postmap: fatal: table lookup failed: {e}");
    EXIT_LOOKUP_FAILED
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn postmap(args: &[&str], stdin: &str) -> (i32, String, String) {
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&a, &mut stdin.as_bytes(), &mut out, &mut err).await;
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    #[tokio::test]
    async fn texthash_queries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = dir.path().join("aliases");
        std::fs::write(&table, "a@example.com b@example.com\n").expect("write");
        let spec = format!("texthash:{}", table.display());
        let c = dir.path().display().to_string();
        assert_eq!(
            postmap(&["-c", &c, "-q", "A@Example.com", &spec], "").await,
            (0, "b@example.com\n".into(), String::new())
        );
        assert_eq!(
            postmap(&["-c", &c, "-q", "x@example.com", &spec], "")
                .await
                .0,
            1
        );
        let (code, out, _) = postmap(
            &["-c", &c, "-q", "-", &spec],
            "x@example.com\na@example.com\n",
        )
        .await;
        assert_eq!((code, out.as_str()), (0, "a@example.com\tb@example.com\n"));
        std::fs::write(&table, "a@example.com b\nbroken\n").expect("write");
        let (code, _, err) = postmap(
            &[
                "-c",
                &c,
                &format!("texthash:{}", dir.path().join("aliases").display()),
            ],
            "",
        )
        .await;
        // The table was already opened above in another Maps; a fresh process sees the new file.
        assert!(code == 1 && err.contains("line 2"), "{code} {err}");
    }
}
