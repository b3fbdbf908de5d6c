-- PostfixAdmin master r1853: totp_exception_address.created/modified {DATECURRENT}.
ALTER TABLE totp_exception_address ADD COLUMN IF NOT EXISTS created timestamp with time zone DEFAULT now();
ALTER TABLE totp_exception_address ADD COLUMN IF NOT EXISTS modified timestamp with time zone DEFAULT now();
