-- PostfixAdmin 3.3.16 schema, PostgreSQL flavour, as a fresh PostfixAdmin install leaves it
-- (column order and nullability as in a real 3.3 pg_dump, including the nullable mailbox.domain
-- and vacation.domain, and the quota/quota2 merge triggers of r730).
-- Applied only to an empty database (version 0); the runner stamps config.version = 1847 afterwards.
-- Statements end with ';' at the end of a line (the runner splits there, but not inside $$ bodies).

CREATE TABLE IF NOT EXISTS config (
  id SERIAL PRIMARY KEY,
  name varchar(20) NOT NULL UNIQUE,
  value varchar(20) NOT NULL
);

CREATE TABLE IF NOT EXISTS domain (
  domain varchar(255) NOT NULL,
  description varchar(255) NOT NULL DEFAULT '',
  aliases integer NOT NULL DEFAULT 0,
  mailboxes integer NOT NULL DEFAULT 0,
  maxquota bigint NOT NULL DEFAULT 0,
  quota bigint NOT NULL DEFAULT 0,
  transport varchar(255) DEFAULT NULL,
  backupmx boolean NOT NULL DEFAULT false,
  created timestamp with time zone DEFAULT now(),
  modified timestamp with time zone DEFAULT now(),
  active boolean NOT NULL DEFAULT true,
  password_expiry int DEFAULT 0,
  CONSTRAINT domain_key PRIMARY KEY (domain)
);
CREATE INDEX IF NOT EXISTS domain_domain_active ON domain (domain, active);

CREATE TABLE IF NOT EXISTS admin (
  username varchar(255) NOT NULL,
  password varchar(255) NOT NULL DEFAULT '',
  created timestamp with time zone DEFAULT now(),
  modified timestamp with time zone DEFAULT now(),
  active boolean NOT NULL DEFAULT true,
  superadmin boolean NOT NULL DEFAULT false,
  phone varchar(30) NOT NULL DEFAULT '',
  email_other varchar(255) NOT NULL DEFAULT '',
  token varchar(255) NOT NULL DEFAULT '',
  token_validity timestamp with time zone DEFAULT '2000-01-01',
  CONSTRAINT admin_key PRIMARY KEY (username)
);

CREATE TABLE IF NOT EXISTS alias (
  address varchar(255) NOT NULL,
  goto text NOT NULL,
  domain varchar(255) NOT NULL REFERENCES domain,
  created timestamp with time zone DEFAULT now(),
  modified timestamp with time zone DEFAULT now(),
  active boolean NOT NULL DEFAULT true,
  CONSTRAINT alias_key PRIMARY KEY (address)
);
CREATE INDEX IF NOT EXISTS alias_address_active ON alias (address, active);
CREATE INDEX IF NOT EXISTS alias_domain_idx ON alias (domain);

CREATE TABLE IF NOT EXISTS alias_domain (
  alias_domain varchar(255) NOT NULL REFERENCES domain (domain) ON DELETE CASCADE,
  target_domain varchar(255) NOT NULL REFERENCES domain (domain) ON DELETE CASCADE,
  created timestamp with time zone DEFAULT now(),
  modified timestamp with time zone DEFAULT now(),
  active boolean NOT NULL DEFAULT true,
  PRIMARY KEY (alias_domain)
);
CREATE INDEX IF NOT EXISTS alias_domain_active ON alias_domain (alias_domain, active);

CREATE TABLE IF NOT EXISTS domain_admins (
  username varchar(255) NOT NULL,
  domain varchar(255) NOT NULL REFERENCES domain,
  created timestamp with time zone DEFAULT now(),
  active boolean NOT NULL DEFAULT true,
  id SERIAL PRIMARY KEY
);

CREATE TABLE IF NOT EXISTS log (
  "timestamp" timestamp with time zone DEFAULT now(),
  username varchar(255) NOT NULL DEFAULT '',
  domain varchar(255) NOT NULL DEFAULT '',
  action varchar(255) NOT NULL DEFAULT '',
  data text NOT NULL DEFAULT '',
  id SERIAL PRIMARY KEY
);
CREATE INDEX IF NOT EXISTS log_domain_timestamp_idx ON log (domain, "timestamp");

CREATE TABLE IF NOT EXISTS mailbox (
  username varchar(255) NOT NULL,
  password varchar(255) NOT NULL DEFAULT '',
  name varchar(255) NOT NULL DEFAULT '',
  maildir varchar(255) NOT NULL DEFAULT '',
  quota bigint NOT NULL DEFAULT 0,
  created timestamp with time zone DEFAULT now(),
  modified timestamp with time zone DEFAULT now(),
  active boolean NOT NULL DEFAULT true,
  domain varchar(255) REFERENCES domain (domain),
  local_part varchar(255) NOT NULL,
  phone varchar(30) NOT NULL DEFAULT '',
  email_other varchar(255) NOT NULL DEFAULT '',
  token varchar(255) NOT NULL DEFAULT '',
  token_validity timestamp with time zone DEFAULT '2000-01-01',
  password_expiry timestamp with time zone DEFAULT '2000-01-01',
  CONSTRAINT mailbox_key PRIMARY KEY (username)
);
CREATE INDEX IF NOT EXISTS mailbox_username_active ON mailbox (username, active);
CREATE INDEX IF NOT EXISTS mailbox_domain_idx ON mailbox (domain);

-- No "cache" column on PostgreSQL (dropped in r4).
CREATE TABLE IF NOT EXISTS vacation (
  email varchar(255) PRIMARY KEY,
  subject varchar(255) NOT NULL,
  body text NOT NULL DEFAULT '',
  created timestamp with time zone DEFAULT now(),
  active boolean NOT NULL DEFAULT true,
  domain varchar(255) REFERENCES domain,
  modified timestamp with time zone DEFAULT now(),
  activefrom timestamp with time zone DEFAULT '2000-01-01',
  activeuntil timestamp with time zone DEFAULT '2038-01-18',
  interval_time integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS vacation_email_active ON vacation (email, active);

CREATE TABLE IF NOT EXISTS vacation_notification (
  on_vacation varchar(255) NOT NULL REFERENCES vacation (email) ON DELETE CASCADE,
  notified varchar(255) NOT NULL,
  notified_at timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT vacation_notification_pkey PRIMARY KEY (on_vacation, notified)
);

CREATE TABLE IF NOT EXISTS quota (
  username varchar(255) NOT NULL,
  path varchar(100) NOT NULL,
  current bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (username, path)
);

CREATE TABLE IF NOT EXISTS quota2 (
  username varchar(100) NOT NULL,
  bytes bigint NOT NULL DEFAULT 0,
  messages integer NOT NULL DEFAULT 0,
  PRIMARY KEY (username)
);

-- r730: Dovecot dict quota writes plain INSERTs; these triggers turn them into increments.
CREATE OR REPLACE FUNCTION merge_quota() RETURNS TRIGGER AS $$
BEGIN
    UPDATE quota SET current = NEW.current + current WHERE username = NEW.username AND path = NEW.path;
    IF found THEN
        RETURN NULL;
    ELSE
        RETURN NEW;
    END IF;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS mergequota ON quota;
CREATE TRIGGER mergequota BEFORE INSERT ON quota FOR EACH ROW EXECUTE PROCEDURE merge_quota();

CREATE OR REPLACE FUNCTION merge_quota2() RETURNS TRIGGER AS $$
BEGIN
    IF NEW.messages < 0 OR NEW.messages IS NULL THEN
        -- ugly kludge: we came here from this function, really do try to insert
        IF NEW.messages IS NULL THEN
            NEW.messages = 0;
        ELSE
            NEW.messages = -NEW.messages;
        END IF;
        return NEW;
    END IF;

    LOOP
        UPDATE quota2 SET bytes = bytes + NEW.bytes,
            messages = messages + NEW.messages
            WHERE username = NEW.username;
        IF found THEN
            RETURN NULL;
        END IF;

        BEGIN
            IF NEW.messages = 0 THEN
                INSERT INTO quota2 (bytes, messages, username) VALUES (NEW.bytes, NULL, NEW.username);
            ELSE
                INSERT INTO quota2 (bytes, messages, username) VALUES (NEW.bytes, -NEW.messages, NEW.username);
            END IF;
            return NULL;
        EXCEPTION WHEN unique_violation THEN
            -- someone just inserted the record, update it
        END;
    END LOOP;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS mergequota2 ON quota2;
CREATE TRIGGER mergequota2 BEFORE INSERT ON quota2 FOR EACH ROW EXECUTE PROCEDURE merge_quota2();

CREATE TABLE IF NOT EXISTS fetchmail (
  id serial PRIMARY KEY,
  mailbox varchar(255) NOT NULL DEFAULT '',
  src_server varchar(255) NOT NULL DEFAULT '',
  src_auth varchar(15) NOT NULL,
  src_user varchar(255) NOT NULL DEFAULT '',
  src_password varchar(255) NOT NULL DEFAULT '',
  src_folder varchar(255) NOT NULL DEFAULT '',
  poll_time integer NOT NULL DEFAULT 10,
  fetchall boolean NOT NULL DEFAULT false,
  keep boolean NOT NULL DEFAULT false,
  protocol varchar(15) NOT NULL,
  extra_options text,
  returned_text text,
  mda varchar(255) NOT NULL DEFAULT '',
  date timestamp with time zone DEFAULT now(),
  usessl boolean NOT NULL DEFAULT false,
  sslcertck boolean NOT NULL DEFAULT false,
  sslcertpath varchar(255) DEFAULT '',
  sslfingerprint varchar(255) DEFAULT '',
  domain varchar(255) DEFAULT '',
  active boolean NOT NULL DEFAULT false,
  created timestamp with time zone DEFAULT '2000-01-01',
  modified timestamp with time zone DEFAULT now(),
  src_port integer NOT NULL DEFAULT 0,
  CHECK (src_auth IN ('password','kerberos_v5','kerberos','kerberos_v4','gssapi','cram-md5','otp','ntlm','msn','ssh','any')),
  CHECK (protocol IN ('POP3','IMAP','POP2','ETRN','AUTO'))
);

INSERT INTO config (name, value) VALUES ('version', '1847') ON CONFLICT (name) DO NOTHING;
