-- Postern's own indexes for the panel's listings. Not a PostfixAdmin revision: nothing is
-- stamped, and every start adds whichever are missing, looked up in
-- information_schema.statistics first (web/src/db/migrate.rs). One `ALTER TABLE `t` ADD INDEX
-- `name` (…)` per statement. PostfixAdmin ignores them.
-- A search scans this index (every column it reads, the primary key included) rather than the
-- table, and pages come in (domain, username) order from it. `alias` needs none: its `domain`
-- key already ends with the primary key (address), and `goto` is TEXT.
ALTER TABLE `mailbox` ADD INDEX `postern_domain_username_name` (`domain`, `username`, `name`);
