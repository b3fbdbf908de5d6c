//! The `postern` binary: dispatches on argv[0] (postconf, postmap, … as drop-ins) or on the
//! first argument (`postern serve|up|admin|postconf|postmap …`). Only argument handling and
//! process setup live here; everything else is in the library.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use postern::cli;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let (tool, rest): (String, Vec<String>) = if is_tool(&argv0) {
        (argv0, args.iter().skip(1).cloned().collect())
    } else {
        match args.get(1) {
            Some(t) => (t.clone(), args.iter().skip(2).cloned().collect()),
            None => {
                eprintln!("{}", USAGE);
                std::process::exit(2);
            }
        }
    };
    let code = match run(&tool, &rest) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("postern {tool}: fatal: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

const USAGE: &str = "usage: postern COMMAND [ARGS]
  up [--data DIR] [--listen ADDR]   run MTA + panel on the embedded default (SQLite + Maildir)
  serve -c DIR                      run the MTA (like postfix start-fg)
  admin -c DIR SUBCOMMAND …         manage domains, mailboxes, aliases, admins
  postconf | postmap | postqueue | mailq | postsuper | postcat | sendmail | newaliases …
                                    Postfix's tools (also as argv[0])";

fn is_tool(name: &str) -> bool {
    matches!(
        name,
        "postconf"
            | "postmap"
            | "postqueue"
            | "mailq"
            | "postsuper"
            | "postcat"
            | "sendmail"
            | "newaliases"
    )
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")
}

fn run(tool: &str, args: &[String]) -> Result<i32> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    match tool {
        "postconf" => Ok(cli::postconf::run(
            args,
            &mut stdout.lock(),
            &mut stderr.lock(),
        )),
        "postmap" => {
            let rt = runtime()?;
            let stdin = std::io::stdin();
            let code = rt.block_on(async {
                cli::postmap::run(
                    args,
                    &mut stdin.lock(),
                    &mut stdout.lock(),
                    &mut stderr.lock(),
                )
                .await
            });
            Ok(code)
        }
        "postqueue" => Ok(cli::postqueue::run(
            args,
            &mut stdout.lock(),
            &mut stderr.lock(),
        )),
        "mailq" => {
            let mut a = vec!["-p".to_string()];
            a.extend_from_slice(args);
            Ok(cli::postqueue::run(
                &a,
                &mut stdout.lock(),
                &mut stderr.lock(),
            ))
        }
        "postsuper" => Ok(cli::postsuper::run(
            args,
            &mut std::io::stdin().lock(),
            &mut stdout.lock(),
            &mut stderr.lock(),
        )),
        "postcat" => Ok(cli::postcat::run(
            args,
            &mut stdout.lock(),
            &mut stderr.lock(),
        )),
        "sendmail" => Ok(cli::sendmail::run(
            args,
            &mut std::io::stdin().lock(),
            &mut stdout.lock(),
            &mut stderr.lock(),
        )),
        "newaliases" => Ok(cli::sendmail::newaliases(
            args,
            &mut stdout.lock(),
            &mut stderr.lock(),
        )),
        "serve" | "start-fg" => {
            let dir = config_flag(args)?;
            let (cfg, _) = postern::config::Config::load(&dir).context("load the configuration")?;
            postern::log::init(&cfg).context("open the mail log")?;
            runtime()?.block_on(postern::master::serve(&dir, None))?;
            Ok(0)
        }
        "up" => {
            runtime()?.block_on(up(args))?;
            Ok(0)
        }
        "admin" => {
            let (dir, rest) = split_config_flag(args);
            let dir = cli::config_dir(dir);
            let rt = runtime()?;
            let stdin = std::io::stdin();
            let out = rt.block_on(postern::master::admin(&dir, &rest, &mut stdin.lock()))?;
            let mut o = stdout.lock();
            write!(o, "{out}").context("write standard output")?;
            Ok(0)
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(0)
        }
        other => bail!("unknown command \"{other}\"\n{USAGE}"),
    }
}

/// `-c DIR` (or MAIL_CONFIG) for commands that take nothing else.
fn config_flag(args: &[String]) -> Result<PathBuf> {
    let (dir, rest) = split_config_flag(args);
    if let Some(extra) = rest.first() {
        bail!("unexpected argument \"{extra}\"");
    }
    Ok(cli::config_dir(dir))
}

/// Takes `-c DIR` out of `args`, returning it and the remaining arguments.
fn split_config_flag(args: &[String]) -> (Option<String>, Vec<String>) {
    let mut dir = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-c" {
            dir = it.next().cloned();
        } else if let Some(d) = a
            .strip_prefix("-c")
            .filter(|d| !d.is_empty() && !a.starts_with("--"))
        {
            dir = Some(d.to_string());
        } else {
            rest.push(a.clone());
        }
    }
    (dir, rest)
}

async fn up(args: &[String]) -> Result<()> {
    let mut data = PathBuf::from("postern-data");
    let mut listen = "127.0.0.1".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data" => data = PathBuf::from(it.next().context("--data needs a directory")?),
            "--listen" => listen = it.next().context("--listen needs an address")?.clone(),
            other => bail!(
                "unexpected argument \"{other}\" (usage: postern up [--data DIR] [--listen ADDR])"
            ),
        }
    }
    postern::master::up(&data, &listen).await
}
