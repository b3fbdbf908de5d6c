-- PostfixAdmin master r1853: totp_exception_address.created/modified {DATECURRENT}.
ALTER TABLE `totp_exception_address`
  ADD COLUMN `created` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  ADD COLUMN `modified` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP;
