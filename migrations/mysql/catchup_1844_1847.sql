-- Brings a stock PostfixAdmin 3.3 MySQL database at revision 1844..1846 to 1847
-- (upgrade_1845: utf8mb4 for user-visible text; upgrade_1847_mysql: quota2.username widened).
-- The collation clean-up of upgrade_1846_mysql is left out: it changes no behaviour Postern uses.
-- Each statement is safe to run twice.
ALTER TABLE `vacation` MODIFY `body` text CHARACTER SET utf8mb4 NOT NULL;
ALTER TABLE `vacation` MODIFY `subject` varchar(255) CHARACTER SET utf8mb4 NOT NULL;
ALTER TABLE `mailbox` MODIFY `name` varchar(255) CHARACTER SET utf8mb4 NOT NULL;
ALTER TABLE `quota2` MODIFY `username` varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL;
