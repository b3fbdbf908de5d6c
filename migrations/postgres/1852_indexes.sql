-- PostfixAdmin master r1852: lookup indexes.
CREATE INDEX IF NOT EXISTS idx_domadm_user_domain_active ON domain_admins (username, domain, active);
CREATE INDEX IF NOT EXISTS idx_fetchmail_domain ON fetchmail (domain);
