-- PostfixAdmin 4.0 r1849: TOTP secrets, TOTP exception addresses, app passwords.
-- Departure: the new tables name latin1_general_ci like the core tables (PostfixAdmin leaves the
-- server default, and joins with mailbox.username then fail with MySQL error 1267).
ALTER TABLE `mailbox` ADD COLUMN `totp_secret` varchar(255) CHARACTER SET utf8mb4 DEFAULT NULL;
ALTER TABLE `admin` ADD COLUMN `totp_secret` varchar(255) CHARACTER SET utf8mb4 DEFAULT NULL;

CREATE TABLE IF NOT EXISTS `totp_exception_address` (
  `id` int(11) NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `ip` varchar(46) NOT NULL,
  `username` varchar(255) DEFAULT NULL,
  `description` varchar(255) DEFAULT NULL,
  UNIQUE KEY `ip_user` (`ip`, `username`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_general_ci;

CREATE TABLE IF NOT EXISTS `mailbox_app_password` (
  `id` int(11) NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `username` varchar(255) DEFAULT NULL,
  `description` varchar(255) DEFAULT NULL,
  `password_hash` varchar(255) DEFAULT NULL
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_general_ci;
