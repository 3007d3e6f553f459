-- Version 5: subscribed names whose folder was deleted. RFC 3501 §6.3.6: the server must not
-- remove a name from the subscription list because the mailbox is gone; LIST shows them
-- \NonExistent (RFC 5258), and a folder re-created under the name is subscribed again.
CREATE TABLE orphan_subscriptions (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes (mailbox_id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, name)
);
