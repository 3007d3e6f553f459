"""The SQLite engine (embedded default): WAL, one writer thread with group commit."""
