"""The warm tier: ClickHouse (embedded chdb or a server) holding raw, bronze, silver and gold."""
