"""``ticklake drill``: the failure modes run against a local deployment on loopback, measured.

    ticklake drill [--modes broker-restart,...] [--quick] [--json PATH] [--workdir DIR]

It starts the deployment (deployment.py: simulated venues behind TCP proxies, a noida-db broker,
``ticklake feed``, ``ticklake up --roles ingest,api,offload`` on the embedded warehouse, SeaweedFS
for the cold tier), lets trades flow, runs each mode in turn (modes.py), waits until the fault is
recovered from, and at the end stops the venues, lets everything be written, and counts (accounting.py):
trades lost and duplicated against the venues' tapes, candles against a recomputation, and the cold
tier (``ticklake offload --once``, ``ticklake audit``, duplicates in the Iceberg tables). It prints a
table (report.py) and exits 1 if any mode missed a target or a final check failed.

Run time: 4 to 10 minutes for every mode at full durations on a 2-core machine; ``--quick``
shortens the outages (object store 20 s instead of 60, partition 15 s instead of 30) and the
completeness check's schedule, and says so.
"""

# The modes a full drill runs, in order (modes.py defines them; here so that the command line can
# list them without loading the drill).
MODE_NAMES = ("broker-restart", "broker-killed", "ingester-killed", "feed-killed", "api-killed", "offloader-killed",
              "object-store-down", "venue-partitioned")
