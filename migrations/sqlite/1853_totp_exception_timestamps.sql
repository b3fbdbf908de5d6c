-- PostfixAdmin master r1853: totp_exception_address.created/modified {DATECURRENT}.
-- SQLite cannot ADD COLUMN with a CURRENT_TIMESTAMP default, so the table is rebuilt
-- (nothing references it). Runs inside the runner's transaction.
CREATE TABLE totp_exception_address_new (
  id integer PRIMARY KEY AUTOINCREMENT NOT NULL,
  ip varchar(46) NOT NULL,
  username varchar(255) DEFAULT NULL,
  description varchar(255) DEFAULT NULL,
  created datetime NOT NULL default CURRENT_TIMESTAMP,
  modified datetime NOT NULL default CURRENT_TIMESTAMP
);
INSERT INTO totp_exception_address_new (id, ip, username, description)
  SELECT id, ip, username, description FROM totp_exception_address;
DROP TABLE totp_exception_address;
ALTER TABLE totp_exception_address_new RENAME TO totp_exception_address;
CREATE UNIQUE INDEX IF NOT EXISTS ip_user ON totp_exception_address (ip, username);
