-- PostfixAdmin 4.0 r1849: TOTP secrets, TOTP exception addresses, app passwords.
ALTER TABLE mailbox ADD COLUMN totp_secret varchar(255) DEFAULT NULL;
ALTER TABLE admin ADD COLUMN totp_secret varchar(255) DEFAULT NULL;

CREATE TABLE IF NOT EXISTS totp_exception_address (
  id integer PRIMARY KEY AUTOINCREMENT NOT NULL,
  ip varchar(46) NOT NULL,
  username varchar(255) DEFAULT NULL,
  description varchar(255) DEFAULT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ip_user ON totp_exception_address (ip, username);

CREATE TABLE IF NOT EXISTS mailbox_app_password (
  id integer PRIMARY KEY AUTOINCREMENT NOT NULL,
  username varchar(255) DEFAULT NULL,
  description varchar(255) DEFAULT NULL,
  password_hash varchar(255) DEFAULT NULL
);
