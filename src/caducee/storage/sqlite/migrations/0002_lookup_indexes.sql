-- Version 2: lookups by IDNPS (bearer-token logins) and by lease holder (node restart).
CREATE INDEX accounts_idnps ON accounts (idnps);
CREATE INDEX queue_lease_node ON queue_items (lease_node);
