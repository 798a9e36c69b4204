-- Roll back version 2: raw frames forget where they came from.
ALTER TABLE raw_frames DROP COLUMN IF EXISTS native_symbol;
ALTER TABLE raw_frames DROP COLUMN IF EXISTS source;
