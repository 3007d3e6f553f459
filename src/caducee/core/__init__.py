"""The domain, without I/O: identities, addresses, mailbox types, errors, audit event types."""
