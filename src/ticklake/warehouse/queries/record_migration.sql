INSERT INTO schema_migrations (version, name, checksum, direction)
VALUES ({version:UInt32}, {name:String}, {checksum:String}, {direction:String});
