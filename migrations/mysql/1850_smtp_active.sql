-- PostfixAdmin 4.0 r1850: per-mailbox SMTP AUTH switch ({BOOLEAN_TRUE}).
ALTER TABLE `mailbox` ADD COLUMN `smtp_active` tinyint(1) NOT NULL DEFAULT '1';
