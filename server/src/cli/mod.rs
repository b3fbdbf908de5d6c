//! The admin tools, each `pub fn run` over its argument list: postconf, postmap, postqueue
//! (+ mailq), postsuper, postcat, sendmail (+ newaliases). Shared here: `-c DIR` / `MAIL_CONFIG` handling
//! and Postfix-style getopt. Entry point from main: `dispatch(name, args)`.

pub mod postcat;
pub mod postconf;
pub mod postmap;
pub mod postqueue;
pub mod postsuper;
pub mod sendmail;

use std::path::PathBuf;

/// The config directory: `-c DIR`, else `$MAIL_CONFIG`, else `/etc/postfix` (as Postfix's tools).
pub fn config_dir(flag: Option<String>) -> PathBuf {
    flag.or_else(|| std::env::var("MAIL_CONFIG").ok().filter(|v| !v.is_empty()))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/postfix"))
}

/// A small getopt: `spec` lists option letters, a letter followed by `:` takes a value.
/// Returns (options in order, operands). Stops at `--`.
pub fn getopt(
    args: &[String],
    spec: &str,
) -> Result<(Vec<(char, Option<String>)>, Vec<String>), String> {
    let mut opts = Vec::new();
    let mut operands = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            operands.extend(it.cloned());
            break;
        }
        if a.len() < 2 || !a.starts_with('-') {
            operands.push(a.clone());
            continue;
        }
        let chars: Vec<char> = a[1..].chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let Some(pos) = spec.find(c) else {
                return Err(format!("invalid option -- '{c}'"));
            };
            let takes = spec[pos + c.len_utf8()..].starts_with(':');
            if takes {
                let rest: String = chars[i + 1..].iter().collect();
                let val = if !rest.is_empty() {
                    rest
                } else {
                    it.next()
                        .cloned()
                        .ok_or_else(|| format!("option requires an argument -- '{c}'"))?
                };
                opts.push((c, Some(val)));
                break;
            }
            opts.push((c, None));
            i += 1;
        }
    }
    Ok((opts, operands))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn getopt_forms() {
        let (o, rest) =
            getopt(&s(&["-nc", "/etc/x", "-q", "key", "sqlite:/y"]), "c:nq:").expect("parses");
        assert_eq!(
            o,
            vec![
                ('n', None),
                ('c', Some("/etc/x".into())),
                ('q', Some("key".into()))
            ]
        );
        assert_eq!(rest, ["sqlite:/y"]);
        assert!(getopt(&s(&["-z"]), "c:").is_err());
        assert!(getopt(&s(&["-c"]), "c:").is_err());
    }
}
