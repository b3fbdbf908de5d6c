-- PostfixAdmin master r1856: per-admin key/value preferences.
CREATE TABLE IF NOT EXISTS admin_preferences (
  username varchar(255) NOT NULL,
  pref_key varchar(64) NOT NULL,
  pref_value varchar(2048) DEFAULT NULL,
  PRIMARY KEY (username, pref_key)
);
