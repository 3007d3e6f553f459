"""The PostgreSQL engine: several stateless nodes share one database."""
