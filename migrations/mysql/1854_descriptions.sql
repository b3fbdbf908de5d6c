-- PostfixAdmin master r1854: free-text descriptions on aliases and alias domains.
ALTER TABLE `alias` ADD COLUMN `description` varchar(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT '';
ALTER TABLE `alias_domain` ADD COLUMN `description` varchar(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT '';
