-- PostfixAdmin 4.0 r1848: OpenDKIM key and signing tables.
CREATE TABLE IF NOT EXISTS dkim (
  id SERIAL PRIMARY KEY,
  domain_name varchar(255) NOT NULL,
  description varchar(255) DEFAULT '',
  selector varchar(63) NOT NULL DEFAULT 'default',
  private_key text,
  public_key text,
  created timestamp with time zone DEFAULT '2000-01-01',
  modified timestamp with time zone DEFAULT '2000-01-01',
  FOREIGN KEY (domain_name) REFERENCES domain (domain) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS domain_desc_idx ON dkim (domain_name, description);

CREATE TABLE IF NOT EXISTS dkim_signing (
  id SERIAL PRIMARY KEY,
  author varchar(255) NOT NULL DEFAULT '',
  dkim_id integer NOT NULL,
  created timestamp with time zone DEFAULT '2000-01-01',
  modified timestamp with time zone DEFAULT '2000-01-01',
  FOREIGN KEY (dkim_id) REFERENCES dkim (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS author_idx ON dkim_signing (author);
