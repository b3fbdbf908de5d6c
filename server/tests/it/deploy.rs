//! The deployment files: `docker-compose.yml` validated by Debian's docker-compose (no Docker
//! engine runs here), and the configuration the Postern image writes on first start
//! (`deploy/postern/main.cf.in` + `master.cf`) accepted by Postern's own parser without warnings.

use std::path::Path;
use std::process::Command;

use crate::peers::postern::postern;
use crate::peers::tools::require_program;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
}

#[test]
fn compose_file_is_valid() {
    let compose = require_program("docker-compose", "docker-compose");
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        repo().join("docker-compose.yml"),
        tmp.path().join("docker-compose.yml"),
    )
    .expect("copy compose file");
    std::fs::copy(repo().join(".env.example"), tmp.path().join(".env")).expect("copy .env.example");
    let out = Command::new(&compose)
        .arg("config")
        .current_dir(tmp.path())
        .output()
        .expect("run docker-compose");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for service in ["postern:", "db:", "dovecot:", "postgres:"] {
        assert!(text.contains(service), "service {service} in {text}");
    }
    // The `ldap` profile (OpenLDAP for POSTERN_TABLES=ldap): valid with the profile enabled, and
    // the service is built from deploy/ldap and belongs to that profile only.
    let out = Command::new(&compose)
        .args(["--profile", "ldap", "config"])
        .current_dir(tmp.path())
        .output()
        .expect("run docker-compose --profile ldap config");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "docker-compose --profile ldap config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ldap = text
        .split("\n  ldap:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n  postern:\n").next())
        .unwrap_or_else(|| panic!("no ldap service in {text}"));
    for want in [
        "dockerfile: deploy/ldap/Dockerfile",
        "profiles:\n    - ldap\n",
        "POSTERN_LDAP_BIND_PW: change-me-ldap",
    ] {
        assert!(ldap.contains(want), "ldap service lacks {want:?}: {ldap}");
    }
    // Every variable the stack reads is documented in .env.example.
    let env_example = std::fs::read_to_string(repo().join(".env.example")).expect(".env.example");
    let compose_text = std::fs::read_to_string(repo().join("docker-compose.yml")).expect("compose");
    let entry =
        std::fs::read_to_string(repo().join("deploy/postern/entrypoint.sh")).expect("entrypoint");
    let other_entries = ["deploy/dovecot/entrypoint.sh", "deploy/ldap/entrypoint.sh"]
        .map(|p| std::fs::read_to_string(repo().join(p)).expect("entrypoint"));
    for source in [&compose_text, &entry].into_iter().chain(&other_entries) {
        for var in source
            .split("${")
            .skip(1)
            .filter_map(|s| s.split([':', '}', '-']).next())
        {
            if var.starts_with("POSTERN_") && !["POSTERN_DB_URL", "POSTERN_TABLES"].contains(&var) {
                assert!(
                    env_example.contains(&format!("{var}=")),
                    "{var} is not documented in .env.example"
                );
            }
        }
    }
}

#[test]
fn image_configuration_is_accepted_by_postern() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let template =
        std::fs::read_to_string(repo().join("deploy/postern/main.cf.in")).expect("main.cf.in");
    let main_cf = template
        .replace("${POSTERN_HOSTNAME}", "mail.example.org")
        .replace("${POSTERN_DB_URL}", "mysql://postfix:pw@db/postfix")
        .replace("${POSTERN_DB_ENGINE}", "mysql")
        .replace("${POSTERN_TABLES}", "/etc/postern/mysql")
        // Set by deploy/postern/entrypoint.sh (image defaults).
        .replace("${POSTERN_MAP_TYPE}", "mysql")
        .replace("${POSTERN_SPOOL}", "/var/spool/postern")
        .replace("${POSTERN_DOVECOT_RUN}", "/run/dovecot");
    assert!(
        !main_cf.contains("${"),
        "unsubstituted variable in {main_cf}"
    );
    std::fs::write(tmp.path().join("main.cf"), main_cf).expect("write main.cf");
    std::fs::copy(
        repo().join("deploy/postern/master.cf"),
        tmp.path().join("master.cf"),
    )
    .expect("copy master.cf");
    let dir = tmp.path().to_str().expect("utf-8");
    let out = postern(&["postconf", "-c", dir, "-n"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.is_empty(), "postconf -n: {err}");
    let out = postern(&["postconf", "-c", dir, "-h", "virtual_transport"], "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "lmtp:unix:/run/dovecot/lmtp"
    );
}
