-- PostfixAdmin 3.3.16 schema, SQLite flavour, as a fresh PostfixAdmin install leaves it
-- (upgrade.php: config table, then upgrade_1824_sqlite, 1837_sqlite, 1839, 1841_sqlite, 1842, 1843).
-- Columns that PostfixAdmin adds with ALTER TABLE are at the end of their table, as in a stock database.
-- Applied only to an empty database (version 0). The runner stamps config.version = 1847 afterwards.
-- Statements end with ';' at the end of a line (the runner splits there).

CREATE TABLE IF NOT EXISTS config (
  id integer PRIMARY KEY AUTOINCREMENT NOT NULL,
  name TEXT NOT NULL UNIQUE DEFAULT '',
  value TEXT NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS admin (
  username varchar(255) NOT NULL,
  password varchar(255) NOT NULL,
  superadmin tinyint(1) NOT NULL DEFAULT '0',
  created datetime NOT NULL default '2000-01-01',
  modified datetime NOT NULL default '2000-01-01',
  active tinyint(1) NOT NULL DEFAULT '1',
  phone varchar(30) NOT NULL DEFAULT '',
  email_other varchar(255) NOT NULL DEFAULT '',
  token varchar(255) NOT NULL DEFAULT '',
  token_validity datetime NOT NULL default '2000-01-01',
  PRIMARY KEY (username)
);

CREATE TABLE IF NOT EXISTS alias (
  address varchar(255) NOT NULL,
  goto text NOT NULL,
  domain varchar(255) NOT NULL,
  created datetime NOT NULL default '2000-01-01',
  modified datetime NOT NULL default '2000-01-01',
  active tinyint(1) NOT NULL DEFAULT '1',
  PRIMARY KEY (address)
);

CREATE TABLE IF NOT EXISTS alias_domain (
  alias_domain varchar(255) NOT NULL,
  target_domain varchar(255) NOT NULL,
  created datetime NOT NULL default '2000-01-01',
  modified datetime NOT NULL default '2000-01-01',
  active tinyint(1) NOT NULL DEFAULT '1',
  PRIMARY KEY (alias_domain)
);

CREATE TABLE IF NOT EXISTS domain (
  domain varchar(255) NOT NULL,
  description varchar(255) NOT NULL,
  aliases int(11) NOT NULL DEFAULT 0,
  mailboxes int(11) NOT NULL DEFAULT 0,
  maxquota bigint(20) NOT NULL DEFAULT 0,
  quota bigint(20) NOT NULL DEFAULT 0,
  transport varchar(255) NOT NULL,
  backupmx tinyint(1) NOT NULL DEFAULT '0',
  created datetime NOT NULL default '2000-01-01',
  modified datetime NOT NULL default '2000-01-01',
  active tinyint(1) NOT NULL DEFAULT '1',
  password_expiry int DEFAULT 0,
  PRIMARY KEY (domain)
);

-- No id column on SQLite (upgrade_1844 skips SQLite); rows are addressed by (username, domain).
CREATE TABLE IF NOT EXISTS domain_admins (
  username varchar(255) NOT NULL,
  domain varchar(255) NOT NULL,
  created datetime NOT NULL default '2000-01-01',
  active tinyint(1) NOT NULL DEFAULT '1'
);

CREATE TABLE IF NOT EXISTS fetchmail (
  id integer PRIMARY KEY AUTOINCREMENT NOT NULL,
  domain varchar(255) DEFAULT '',
  mailbox varchar(255) NOT NULL,
  src_server varchar(255) NOT NULL,
  src_auth varchar(255) DEFAULT NULL,
  src_user varchar(255) NOT NULL,
  src_password varchar(255) NOT NULL,
  src_folder varchar(255) NOT NULL,
  poll_time int(11) NOT NULL DEFAULT '10',
  fetchall tinyint(1) NOT NULL DEFAULT '0',
  keep tinyint(1) NOT NULL DEFAULT '0',
  protocol text DEFAULT NULL,
  usessl tinyint(1) NOT NULL DEFAULT '0',
  sslcertck tinyint(1) NOT NULL DEFAULT '0',
  sslcertpath varchar(255) DEFAULT '',
  sslfingerprint varchar(255) DEFAULT '',
  extra_options text,
  returned_text text,
  mda varchar(255) NOT NULL,
  date datetime NOT NULL default '2000-01-01',
  created datetime NOT NULL default '2000-01-01',
  modified datetime NOT NULL default CURRENT_TIMESTAMP,
  active tinyint(1) NOT NULL DEFAULT '0',
  src_port int(11) NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS log (
  id integer PRIMARY KEY AUTOINCREMENT NOT NULL,
  timestamp datetime NOT NULL default '2000-01-01',
  username varchar(255) NOT NULL,
  domain varchar(255) NOT NULL,
  action varchar(255) NOT NULL,
  data text NOT NULL
);

CREATE TABLE IF NOT EXISTS mailbox (
  username varchar(255) NOT NULL,
  password varchar(255) NOT NULL,
  name varchar(255) NOT NULL,
  maildir varchar(255) NOT NULL,
  quota bigint(20) NOT NULL DEFAULT 0,
  local_part varchar(255) NOT NULL,
  domain varchar(255) NOT NULL,
  created datetime NOT NULL default '2000-01-01',
  modified datetime NOT NULL default '2000-01-01',
  active tinyint(1) NOT NULL DEFAULT '1',
  phone varchar(30) NOT NULL DEFAULT '',
  email_other varchar(255) NOT NULL DEFAULT '',
  token varchar(255) NOT NULL DEFAULT '',
  token_validity datetime NOT NULL default '2000-01-01',
  password_expiry datetime NOT NULL default '2000-01-01',
  PRIMARY KEY (username)
);

CREATE TABLE IF NOT EXISTS quota (
  username varchar(255) NOT NULL,
  path varchar(100) NOT NULL,
  current bigint(20) NOT NULL DEFAULT 0,
  PRIMARY KEY (username, path)
);

CREATE TABLE IF NOT EXISTS quota2 (
  username varchar(255) NOT NULL,
  bytes bigint(20) NOT NULL DEFAULT 0,
  messages int(11) NOT NULL DEFAULT 0,
  PRIMARY KEY (username)
);

CREATE TABLE IF NOT EXISTS vacation (
  email varchar(255) NOT NULL,
  subject varchar(255) NOT NULL,
  body text NOT NULL,
  activefrom datetime NOT NULL default '2000-01-01',
  activeuntil datetime NOT NULL default '2038-01-18',
  cache text NOT NULL DEFAULT '',
  domain varchar(255) NOT NULL,
  interval_time int(11) NOT NULL DEFAULT 0,
  created datetime NOT NULL default '2000-01-01',
  modified datetime NOT NULL default CURRENT_TIMESTAMP,
  active tinyint(1) NOT NULL DEFAULT '1',
  PRIMARY KEY (email)
);

CREATE TABLE IF NOT EXISTS vacation_notification (
  on_vacation varchar(255) NOT NULL,
  notified varchar(255) NOT NULL,
  notified_at datetime NOT NULL default CURRENT_TIMESTAMP,
  PRIMARY KEY (on_vacation, notified),
  CONSTRAINT vacation_notification_pkey FOREIGN KEY (on_vacation) REFERENCES vacation (email) ON DELETE CASCADE
);

INSERT OR IGNORE INTO config (name, value) VALUES ('version', '1847');
