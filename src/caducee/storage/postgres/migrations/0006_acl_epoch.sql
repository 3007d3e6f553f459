-- Version 6: a counter raised by every change that can alter which BALs an account sees or
-- its rights on them (accounts, mailboxes, delegations): an IMAP session re-reads its BAL
-- list only when it moved, so a revoked right still takes effect at the next command.
CREATE TABLE acl_epoch (id INTEGER PRIMARY KEY, epoch BIGINT NOT NULL);
INSERT INTO acl_epoch (id, epoch) VALUES (1, 0);
