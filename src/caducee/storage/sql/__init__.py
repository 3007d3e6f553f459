"""Engine-neutral SQL: operations written once as generators, run by the SQLite and PostgreSQL
engines (see ``base``)."""
