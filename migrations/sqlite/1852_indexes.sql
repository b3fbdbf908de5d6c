-- PostfixAdmin master r1852: lookup indexes.
CREATE INDEX IF NOT EXISTS idx_domadm_user_domain_active ON domain_admins (username, domain, active);
CREATE INDEX IF NOT EXISTS idx_fetchmail_domain ON fetchmail (domain);

-- Postern: the per-domain indexes MySQL and PostgreSQL have had since r655/r1050
-- (a stock SQLite database has none; the panel lists by domain).
CREATE INDEX IF NOT EXISTS alias_domain_idx ON alias (domain);
CREATE INDEX IF NOT EXISTS mailbox_domain_idx ON mailbox (domain);
CREATE INDEX IF NOT EXISTS log_domain_timestamp_idx ON log (domain, timestamp);
