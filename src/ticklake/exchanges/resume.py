"""What the broker holds of each market's trades (the Kafka bus), and where a feed resumes from it.

At start, a feed role resumes each market from the newest trade on the broker (what reached the
broker, even if not yet the warehouse): the downtime shows as a gap in the trade ids, backfilled from
the venue, and so do the holes below it (``gaps.resume_from``). After the broker lost its connection,
the feed role compares what it holds with what the feeds handed on (``Platform.check_broker``).

The trades are read back from the end of the venues' trades topics by the bus, handed in as a
``TailReader`` (``partial(ticklake.bus.kafka.read_tail, settings, topics)``): the bus comes after this
layer and is not imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ticklake.exchanges.backfill import from_rest
from ticklake.exchanges.gaps import Resume, resume_from
from ticklake.model import Message, Trade

# Reads the trades topics back from their ends: a first stretch, then further back (within its own
# bounds) for as long as the callable it is given says that what was handed over is not enough.
TailReader = Callable[[Callable[[], bool]], Iterable[Message]]

_LAST = (2**63, 0)


def held_trades(read_tail: TailReader, markets: set[tuple[str, str]] | None = None
                ) -> dict[tuple[str, str], dict[int, int]]:
    """The trades the broker holds near the end of the trades topics: (exchange, native symbol) ->
    {trade id: exchange time µs}. Reads further back while a market in ``markets`` was not seen.

    Only ids from the market's oldest *streamed* trade in what was read on are given: a backfill
    publishes old ids late, and the ids between those and the stream's were published before what
    was read, not lost."""
    seen: dict[tuple[str, str], dict[int, int]] = {}
    first_streamed: dict[tuple[str, str], tuple[int, int]] = {}  # (offset, trade id), the lowest offset
    for message in read_tail(lambda: markets is None or markets <= seen.keys()):
        record = message.value
        if isinstance(record, Trade):
            market = (record.exchange, record.native_symbol)
            seen.setdefault(market, {})[record.trade_id] = record.ts_us
            if not from_rest(record.conn_id) and (message.offset, record.trade_id) < first_streamed.get(market, _LAST):
                first_streamed[market] = (message.offset, record.trade_id)
    for market, (_offset, floor) in first_streamed.items():
        seen[market] = {i: ts for i, ts in seen[market].items() if i >= floor}
    return seen


def broker_resume_points(read_tail: TailReader, markets: set[tuple[str, str]] | None = None
                         ) -> dict[tuple[str, str], Resume]:
    """Where each market's (exchange, native symbol) feed resumes: the newest trade the broker holds,
    and the holes below it (``held_trades``, ``gaps.resume_from``), so that what a stopped (or killed)
    feed never delivered, and a backfill it did not finish, are backfilled from the venue."""
    found = {}
    for market, ids in held_trades(read_tail, markets).items():
        resume = resume_from(ids.items(), market[1])
        if resume is not None:
            found[market] = resume
    return found
