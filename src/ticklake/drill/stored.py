"""When trades flowed again, read from the warehouse itself once the run is over: for each moment,
the time until every market had a trade made after it committed (``committed_us``). The API's view
(the MTTR column) can only be later; the two together say whether a slow recovery was the pipeline
or the reading of it.

    python -m ticklake.drill.stored WAREHOUSE_URL DATABASE < '{"markets": [[e, s], ...], "moments": [t, ...]}'

prints a JSON list: seconds from each moment (epoch seconds) to that, or null. A process of its own:
the embedded warehouse is opened by one process at a time, and the drill opens it only once the
roles have stopped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ticklake.warehouse.client import open_client

SQL = (Path(__file__).with_name("first_stored.sql")).read_text()


def main(url: str, database: str) -> None:
    request = json.load(sys.stdin)
    client = open_client(url, database)
    try:
        answers: list[float | None] = []
        for moment in request["moments"]:
            firsts: list[int] = []
            for exchange, symbol in request["markets"]:
                row = client.query(SQL, parameters={"exchange": exchange, "symbol": symbol,
                                                    "since_us": int(moment * 1_000_000)}).first_row
                first = row[0] if row else 0
                if not first:  # none stored (min of nothing is 0)
                    break
                firsts.append(int(first))
            complete = len(firsts) == len(request["markets"])
            answers.append(round(max(firsts) / 1e6 - moment, 3) if complete else None)
    finally:
        client.close()
    print(json.dumps(answers))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
