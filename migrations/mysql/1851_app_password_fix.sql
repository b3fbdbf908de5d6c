-- PostfixAdmin 4.0 r1851_mysql: create mailbox_app_password where 1849 missed it.
CREATE TABLE IF NOT EXISTS `mailbox_app_password` (
  `id` int(11) NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `username` varchar(255) DEFAULT NULL,
  `description` varchar(255) DEFAULT NULL,
  `password_hash` varchar(255) DEFAULT NULL
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_general_ci;
