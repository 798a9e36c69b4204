-- ticklake warehouse, version 2: raw frames say where they came from. A REST page fetched to fill a
-- gap is kept in raw like a WebSocket frame, but it is parsed with the venue's REST parser, and its
-- body may not name its market (Binance, Coinbase): so raw keeps both, and repair can re-derive it.
ALTER TABLE raw_frames ADD COLUMN IF NOT EXISTS source LowCardinality(String) DEFAULT 'ws' AFTER trade_count;
ALTER TABLE raw_frames ADD COLUMN IF NOT EXISTS native_symbol String DEFAULT '' AFTER source;
