-- PostfixAdmin master r1852: lookup indexes.
ALTER TABLE `domain_admins` ADD INDEX `idx_domadm_user_domain_active` (`username`, `domain`, `active`);
ALTER TABLE `fetchmail` ADD INDEX `idx_fetchmail_domain` (`domain`);
