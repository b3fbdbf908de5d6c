-- PostfixAdmin master r1854: free-text descriptions on aliases and alias domains.
ALTER TABLE alias ADD COLUMN IF NOT EXISTS description varchar(255) NOT NULL DEFAULT '';
ALTER TABLE alias_domain ADD COLUMN IF NOT EXISTS description varchar(255) NOT NULL DEFAULT '';
