-- Version 3: persistent \Recent mark (RFC 3501 §2.3.2): the highest UID already shown as
-- \Recent to a session that selected the folder read-write. Existing messages are not recent.
ALTER TABLE folders ADD COLUMN recent_uid BIGINT NOT NULL DEFAULT 0;
UPDATE folders SET recent_uid = uidnext - 1;
