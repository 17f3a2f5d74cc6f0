"""Query helpers: metadata filters compiled to parameterized SQLite SQL."""
