-- Postern's trigram indexes for the panel's searches (`col ILIKE '%text%'`), after
-- postern_indexes.sql. pg_trgm is a trusted extension since PostgreSQL 13, so a database owner
-- may create it. Where it cannot be created this file is rolled back with a warning and
-- searches scan the table instead (web/src/db/migrate.rs).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS postern_mailbox_username_trgm ON mailbox USING gin (username gin_trgm_ops);
CREATE INDEX IF NOT EXISTS postern_mailbox_name_trgm ON mailbox USING gin (name gin_trgm_ops);
CREATE INDEX IF NOT EXISTS postern_alias_address_trgm ON alias USING gin (address gin_trgm_ops);
CREATE INDEX IF NOT EXISTS postern_alias_goto_trgm ON alias USING gin (goto gin_trgm_ops);
