-- PostfixAdmin 4.0 r1848: core tables on InnoDB (foreign keys need it), OpenDKIM tables.
ALTER TABLE `config` ENGINE=InnoDB;
ALTER TABLE `admin` ENGINE=InnoDB;
ALTER TABLE `alias` ENGINE=InnoDB;
ALTER TABLE `alias_domain` ENGINE=InnoDB;
ALTER TABLE `domain` ENGINE=InnoDB;
ALTER TABLE `domain_admins` ENGINE=InnoDB;
ALTER TABLE `fetchmail` ENGINE=InnoDB;
ALTER TABLE `log` ENGINE=InnoDB;
ALTER TABLE `mailbox` ENGINE=InnoDB;
ALTER TABLE `quota` ENGINE=InnoDB;
ALTER TABLE `quota2` ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS `dkim` (
  `id` int(11) NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `domain_name` varchar(255) NOT NULL,
  `description` varchar(255) DEFAULT '',
  `selector` varchar(63) NOT NULL DEFAULT 'default',
  `private_key` text,
  `public_key` text,
  `created` datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  `modified` datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  INDEX (`domain_name`, `description`),
  FOREIGN KEY (`domain_name`) REFERENCES `domain` (`domain`) ON DELETE CASCADE
) CHARACTER SET latin1 COLLATE latin1_general_ci COMMENT='Postfix Admin - OpenDKIM Key Table';

CREATE TABLE IF NOT EXISTS `dkim_signing` (
  `id` int(11) NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `author` varchar(255) NOT NULL DEFAULT '',
  `dkim_id` integer NOT NULL,
  `created` datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  `modified` datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  INDEX (`author`),
  FOREIGN KEY (`dkim_id`) REFERENCES `dkim` (`id`) ON DELETE CASCADE
) CHARACTER SET latin1 COLLATE latin1_general_ci COMMENT='Postfix Admin - OpenDKIM Signing Table';
