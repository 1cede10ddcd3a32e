"""Where tables live, every governance table's schema, Delta helpers, the load manifest."""
