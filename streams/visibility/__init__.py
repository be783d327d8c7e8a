"""The run index's read side: its records, the store (SQL on SQLite or PostgreSQL), the filter."""
