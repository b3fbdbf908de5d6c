-- PostfixAdmin 4.0 r1848: OpenDKIM key and signing tables.
CREATE TABLE IF NOT EXISTS dkim (
  id integer PRIMARY KEY AUTOINCREMENT NOT NULL,
  domain_name varchar(255) NOT NULL,
  description varchar(255) DEFAULT '',
  selector varchar(63) NOT NULL DEFAULT 'default',
  private_key text,
  public_key text,
  created datetime NOT NULL default '2000-01-01',
  modified datetime NOT NULL default '2000-01-01',
  FOREIGN KEY (domain_name) REFERENCES domain (domain) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS dkim_signing (
  id integer PRIMARY KEY AUTOINCREMENT NOT NULL,
  author varchar(255) NOT NULL DEFAULT '',
  dkim_id integer NOT NULL,
  created datetime NOT NULL default '2000-01-01',
  modified datetime NOT NULL default '2000-01-01',
  FOREIGN KEY (dkim_id) REFERENCES dkim (id) ON DELETE CASCADE
);

-- PostfixAdmin creates these two indexes on MySQL and PostgreSQL only; they cost nothing here.
CREATE INDEX IF NOT EXISTS domain_desc_idx ON dkim (domain_name, description);
CREATE INDEX IF NOT EXISTS author_idx ON dkim_signing (author);
