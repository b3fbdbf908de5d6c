//! The `postern` binary: dispatches on argv[0] (postconf, postmap, … as drop-ins) or on the
//! first argument (`postern serve|up|admin|postconf|postmap …`). Only argument handling and
//! process setup live here; everything else is in the library.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
  serve -c DIR                      run the MTA in the foreground (= start-fg)
  start|stop|reload|status|check [-c DIR]
                                    like postfix(1): daemonise, SIGTERM, SIGHUP, report, verify
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
        "start" => start(&config_flag(args)?),
        "stop" => stop(&config_flag(args)?),
        "reload" => {
            let (_, pid, error) = running(&config_flag(args)?)?;
            if let Some(e) = error {
                // The master would refuse it too (and keep running); say so here, with the line.
                eprintln!("postfix/postfix-script: fatal: {e}");
                return Ok(1);
            }
            let Some(pid) = pid else {
                eprintln!("{NOT_RUNNING}");
                return Ok(1);
            };
            send_signal("-HUP", pid)?;
            eprintln!("postfix/postfix-script: refreshing the Postfix mail system");
            Ok(0)
        }
        "status" => match running(&config_flag(args)?)? {
            (_, Some(pid), _) => {
                eprintln!("postfix/postfix-script: the Postfix mail system is running: PID: {pid}");
                Ok(0)
            }
            (_, None, _) => {
                eprintln!("{NOT_RUNNING}");
                Ok(1)
            }
        },
        "check" => check(&config_flag(args)?),
        "serve" | "start-fg" | "master" => {
            // `master` is what `postern start` runs in the background: it logs to syslog.
            let mode = if tool == "master" {
                postern::log::Mode::Daemon
            } else {
                postern::log::Mode::Foreground
            };
            let dir = config_flag(args)?;
            let (cfg, _) = postern::config::Config::load(&dir).context("load the configuration")?;
            postern::log::init(&cfg, mode).context("open the mail log")?;
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

const NOT_RUNNING: &str = "postfix/postfix-script: the Postfix mail system is not running";

/// The configuration of DIR and the pid of its running master, if any. A configuration that
/// does not load still gives its `queue_directory` (so `stop` and `status` work on a broken
/// main.cf); the load error comes back beside it.
fn running(dir: &Path) -> Result<(postern::config::Config, Option<u32>, Option<String>)> {
    use postern::config::{Config, maincf};
    let (cfg, error) = match Config::load(dir) {
        Ok((cfg, _)) => (cfg, None),
        Err(e) => {
            let text = std::fs::read_to_string(dir.join("main.cf")).unwrap_or_default();
            let queue = maincf::parse(&text)
                .ok()
                .and_then(|es| es.into_iter().rev().find(|e| e.name == "queue_directory"))
                .map(|e| format!("queue_directory = {}\n", e.value))
                .unwrap_or_default();
            let error = e.to_string();
            let (cfg, _) = Config::from_text(dir, &queue, "").map_err(|_| e)?;
            (cfg, Some(error))
        }
    };
    let pid = postern::master::running_pid(&cfg.get_path("queue_directory"));
    Ok((cfg, pid, error))
}

/// `kill SIGNAL PID` (the workspace forbids `unsafe`, so no libc::kill).
fn send_signal(signal: &str, pid: u32) -> Result<()> {
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .context("run kill")?;
    if !status.success() {
        bail!("kill {signal} {pid} failed: {status}");
    }
    Ok(())
}

/// `postern start`: runs `postern master -c DIR` (= start-fg logging to syslog) detached (own process group, stdin from
/// /dev/null, output appended to `maillog_file` or discarded), then waits until its pid file
/// appears. Under systemd or in a container, run `start-fg` directly instead.
fn start(dir: &Path) -> Result<i32> {
    let (cfg, pid, error) = running(dir)?;
    if let Some(e) = error {
        eprintln!("postfix/postfix-script: fatal: {e}");
        return Ok(1);
    }
    if let Some(pid) = pid {
        eprintln!(
            "postfix/postfix-script: fatal: the Postfix mail system is already running: PID: {pid}"
        );
        return Ok(1);
    }
    let maillog = cfg.get("maillog_file");
    let out = if maillog.is_empty() {
        Stdio::null()
    } else {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&maillog)
            .with_context(|| format!("open {maillog}"))?
            .into()
    };
    let exe = std::env::current_exe().context("find the postern binary")?;
    let mut child = Command::new(exe)
        .arg("master")
        .arg("-c")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(out)
        .process_group(0)
        .spawn()
        .context("start postern start-fg")?;
    eprintln!("postfix/postfix-script: starting the Postfix mail system");
    let queue_dir = cfg.get_path("queue_directory");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().context("wait for start-fg")? {
            bail!("the mail system did not start ({status}); see the mail log");
        }
        if postern::master::running_pid(&queue_dir) == Some(child.id()) {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the mail system did not write its pid file within 30s")
}

/// `postern stop`: SIGTERM to the master, then waits for it to exit (its drain included).
fn stop(dir: &Path) -> Result<i32> {
    let (cfg, pid, _) = running(dir)?;
    let Some(pid) = pid else {
        eprintln!("{NOT_RUNNING}");
        return Ok(1);
    };
    send_signal("-TERM", pid)?;
    eprintln!("postfix/postfix-script: stopping the Postfix mail system");
    let queue_dir = cfg.get_path("queue_directory");
    let limit = cfg.get_time("postern_drain_timeout") + Duration::from_secs(35);
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if postern::master::running_pid(&queue_dir) != Some(pid) {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("PID {pid} is still running after {}s", limit.as_secs())
}

/// `postern check`: the configuration loads (errors name file and line), every smtpd service's
/// settings build, and the queue directory exists and is writable.
fn check(dir: &Path) -> Result<i32> {
    let (cfg, warnings) = match postern::config::Config::load(dir) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("postfix/postfix-script: fatal: {e}");
            return Ok(1);
        }
    };
    for w in &warnings {
        eprintln!("postfix/postfix-script: warning: {}", w.0);
    }
    let mut ok = true;
    for svc in cfg
        .master()
        .iter()
        .filter(|s| s.kind == "inet" && s.command == "smtpd")
    {
        if let Err(e) = postern::smtpd::Settings::from_config(&cfg.for_service(svc)) {
            eprintln!(
                "postfix/postfix-script: fatal: master.cf, line {}: service {}: {e}",
                svc.line, svc.name
            );
            ok = false;
        }
    }
    let queue_dir = cfg.get_path("queue_directory");
    if !queue_dir.is_dir() {
        eprintln!(
            "postfix/postfix-script: fatal: queue_directory {} does not exist",
            queue_dir.display()
        );
        return Ok(1);
    }
    let probe = queue_dir.join(format!(".check.{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => {
            eprintln!(
                "postfix/postfix-script: fatal: queue_directory {} is not writable: {e}",
                queue_dir.display()
            );
            ok = false;
        }
    }
    Ok(if ok { 0 } else { 1 })
}
