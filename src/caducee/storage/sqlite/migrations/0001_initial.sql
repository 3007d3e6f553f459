-- Caducée storage, SQLite, version 1. Times are microseconds since the epoch (UTC).
CREATE TABLE accounts (
    account_id INTEGER PRIMARY KEY AUTOINCREMENT,
    login TEXT NOT NULL,
    login_key TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL DEFAULT '',
    idnps TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    password_hash TEXT,
    created INTEGER NOT NULL
);
CREATE TABLE mailboxes (
    mailbox_id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL,
    address_key TEXT NOT NULL UNIQUE,
    domain TEXT NOT NULL,
    type TEXT NOT NULL,
    holder_id TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    quota_bytes INTEGER NOT NULL DEFAULT 0,
    used_bytes INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);
CREATE INDEX mailboxes_domain ON mailboxes (domain);
CREATE TABLE delegations (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes (mailbox_id) ON DELETE CASCADE,
    rights TEXT NOT NULL,
    PRIMARY KEY (account_id, mailbox_id)
);
CREATE INDEX delegations_mailbox ON delegations (mailbox_id);
CREATE TABLE folders (
    folder_id INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes (mailbox_id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    highest_modseq INTEGER NOT NULL DEFAULT 1,
    special_use TEXT,
    subscribed INTEGER NOT NULL DEFAULT 1,
    UNIQUE (mailbox_id, name)
);
CREATE TABLE blobs (
    blob_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    salt BLOB NOT NULL,
    data BLOB,
    path TEXT,
    created INTEGER NOT NULL
);
CREATE TABLE messages (
    folder_id INTEGER NOT NULL REFERENCES folders (folder_id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    mailbox_id INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    flags TEXT NOT NULL DEFAULT '',
    seen INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    internal_date INTEGER NOT NULL,
    size INTEGER NOT NULL,
    blob_id TEXT NOT NULL REFERENCES blobs (blob_id),
    key_id TEXT NOT NULL,
    dedup_key TEXT,
    PRIMARY KEY (folder_id, uid)
);
CREATE INDEX messages_modseq ON messages (folder_id, modseq);
CREATE INDEX messages_unseen ON messages (folder_id, seen, uid);
CREATE INDEX messages_blob ON messages (blob_id);
CREATE INDEX messages_dedup ON messages (mailbox_id, dedup_key) WHERE dedup_key IS NOT NULL;
CREATE TABLE expunged (
    folder_id INTEGER NOT NULL REFERENCES folders (folder_id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (folder_id, uid)
);
CREATE TABLE dedup (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes (mailbox_id) ON DELETE CASCADE,
    dedup_key TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, dedup_key)
);
CREATE TABLE queue_items (
    item_id INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    blob_id TEXT NOT NULL REFERENCES blobs (blob_id),
    key_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    domain TEXT NOT NULL,
    created INTEGER NOT NULL,
    next_attempt INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    envid TEXT,
    ret TEXT,
    last_error TEXT NOT NULL DEFAULT '',
    lease_node TEXT,
    lease_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX queue_due ON queue_items (next_attempt);
CREATE INDEX queue_blob ON queue_items (blob_id);
CREATE TABLE queue_recipients (
    item_id INTEGER NOT NULL REFERENCES queue_items (item_id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    notify TEXT NOT NULL DEFAULT '',
    orcpt TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    diagnostic TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (item_id, idx)
);
CREATE TABLE audit (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    actor TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    details TEXT NOT NULL DEFAULT '{}',
    node TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_target ON audit (target, event_id);
