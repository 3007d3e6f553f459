-- Version 4: the zone of INTERNALDATE (RFC 9051 §2.3.3), in minutes east of UTC, as given
-- by APPEND; delivered mail keeps +0000. internal_date stays the instant.
ALTER TABLE messages ADD COLUMN internal_tz INTEGER NOT NULL DEFAULT 0;
