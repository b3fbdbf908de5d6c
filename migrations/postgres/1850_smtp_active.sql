-- PostfixAdmin 4.0 r1850: per-mailbox SMTP AUTH switch ({BOOLEAN_TRUE}).
ALTER TABLE mailbox ADD COLUMN IF NOT EXISTS smtp_active boolean NOT NULL DEFAULT true;
