"""Table schemas, row ids, validation, and the versioned store."""
