-- Postern's own indexes for the panel's listings. Not a PostfixAdmin revision: nothing is
-- stamped, and every start creates whichever are missing (web/src/db/migrate.rs).
-- Pages in (domain, key) order come straight from an index. PostfixAdmin ignores them.
CREATE INDEX IF NOT EXISTS postern_mailbox_domain_username ON mailbox (domain, username);
CREATE INDEX IF NOT EXISTS postern_alias_domain_address ON alias (domain, address);
