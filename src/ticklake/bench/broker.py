"""The distributed mode's figures: the roles through a Kafka-API broker on loopback.

Where the broker comes from:

- ``bus.kind = "kafka"``: the configured bootstrap servers. Every stage then uses topics and
  consumer groups of its own (``ticklake-bench-…``), deleted afterwards; the latency stage, which runs
  the platform with its real topic names, runs only where none of them exists yet (it would mix
  simulated trades into real ones), and deletes them afterwards;
- otherwise noida-db (``pip install noida-db==0.2.3``; the bundled binary, not its pip wrapper),
  started by the bench on a free port with a fresh data directory for each stage, and stopped
  afterwards, also on error;
- neither: the stages are skipped, with a line saying how to get a broker.

The stages themselves (``bus_stages``) run in their own processes, like every other stage.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ticklake.bus import topics_for
from ticklake.drill.services import Broker, MissingBinaryError, noida_binary
from ticklake.settings import KafkaSettings, Settings

SKIPPED = ("skipped: no Kafka broker (pip install noida-db==0.2.3, or set TICKLAKE_BUS__KIND=kafka and "
           "TICKLAKE_BUS__KAFKA__BOOTSTRAP_SERVERS)")
# The stage processes read the broker's settings (secrets included) from the environment, not argv.
KAFKA_ENV = "TICKLAKE_BENCH_KAFKA"
STAGES_MODULE = "ticklake.bench.bus_stages"


def noida_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("noida-db")
    except PackageNotFoundError:
        return "?"


class BenchBroker:
    """One broker for one stage: ``kafka`` is what the stage's clients use."""

    def __init__(self, kafka: KafkaSettings, description: str, started: Broker | None = None) -> None:
        self.kafka = kafka
        self.description = description
        self.started = started  # the noida-db the bench started (drill/services.py), None: configured
        self.run_id = uuid.uuid4().hex[:8]
        self._created: list[str] = []

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.started.process if self.started is not None else None

    @property
    def ours(self) -> bool:
        """Started by the bench (throwaway) rather than configured."""
        return self.started is not None

    def env(self) -> dict[str, str]:
        return {**os.environ, "TZ": "UTC", KAFKA_ENV: self.kafka.model_dump_json()}

    def topic(self, name: str) -> str:
        """A topic name of this run's own (a name ending in ``.raw`` holds raw frames: codec.py)."""
        return f"ticklake-bench-{self.run_id}.{name}"

    def _admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.kafka.bootstrap_servers, "client.id": self.kafka.client_id,
                            **self.kafka.config})

    def existing(self, names: list[str], timeout_s: float = 30.0) -> list[str]:
        described = self._admin().list_topics(timeout=timeout_s).topics
        return [name for name in names if name in described]

    def create_topics(self, names: list[str], timeout_s: float = 30.0) -> None:
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        wanted = [NewTopic(name, num_partitions=self.kafka.partitions,
                           replication_factor=self.kafka.replication_factor,
                           config={"retention.ms": str(3_600_000)}) for name in names]
        admin = self._admin()  # held until every answer is in (a dropped client cancels its requests)
        for name, future in admin.create_topics(wanted, request_timeout=timeout_s).items():
            future.result(timeout=timeout_s)
            self._created.append(name)

    def delete_created_topics(self, timeout_s: float = 30.0) -> None:
        """Only on a configured broker: a broker of our own goes away with its data."""
        names, self._created = self._created, []
        if self.ours or not names:
            return
        admin = self._admin()
        for name, future in admin.delete_topics(names, request_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
            except Exception as exc:  # best effort: say so and go on
                print(f"bench: could not delete topic {name}: {exc}", file=sys.stderr)

    def peak_rss_mb(self) -> float | None:
        if self.process is None:
            return None
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024)
        except OSError:
            return None
        return None

    def cpu_s(self) -> float | None:
        """CPU time the broker process has used so far (None: not ours)."""
        if self.process is None:
            return None
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def stop(self) -> None:
        if self.started is not None:
            self.started.stop()  # its whole process group: SIGTERM, then SIGKILL after 10 s


def unavailable(settings: Settings) -> str | None:
    """Why the broker stages cannot run (None: they can)."""
    if settings.bus.kind == "kafka":
        broker = BenchBroker(settings.bus.kafka, "")
        try:
            broker.existing([], timeout_s=10)
        except Exception as exc:
            return f"skipped: the configured broker {settings.bus.kafka.bootstrap_servers} did not answer ({exc})"
        return None
    return None if noida_binary() is not None else SKIPPED


def _bench_kafka(kafka: KafkaSettings, bootstrap: str | None) -> KafkaSettings:
    """The configured tuning (partitions, compression, linger...) with the bench's own names; on a
    broker of our own, none of the configured connection properties (security...)."""
    update: dict[str, Any] = {"client_id": "ticklake-bench", "group_id": f"ticklake-bench-{uuid.uuid4().hex[:8]}"}
    if bootstrap is not None:
        update.update(bootstrap_servers=bootstrap, config={}, replication_factor=1)
    return kafka.model_copy(update=update)


@contextlib.contextmanager
def bench_broker(settings: Settings, workdir: Path) -> Iterator[BenchBroker]:
    """The configured broker, or a fresh noida-db in ``workdir`` (stopped at the end, also on error)."""
    if settings.bus.kind == "kafka":
        broker = BenchBroker(_bench_kafka(settings.bus.kafka, None),
                             f"the configured broker {settings.bus.kafka.bootstrap_servers}")
        try:
            yield broker
        finally:
            broker.delete_created_topics()
        return
    started = Broker(workdir / "broker-data")  # its log: workdir/broker-data.log
    try:
        started.start()
    except MissingBinaryError:
        raise RuntimeError(SKIPPED) from None
    except BaseException:  # it did not open its port in time: never leave it running
        started.stop()
        raise
    broker = BenchBroker(_bench_kafka(settings.bus.kafka, started.bootstrap),
                         f"noida-db {noida_version()} started by the bench (fresh for each stage)", started)
    try:
        yield broker
    finally:
        broker.stop()


# --- the stages ----------------------------------------------------------------------------------
def _run(broker: BenchBroker, *args: str, timeout: float = 900) -> dict[str, Any]:
    from ticklake.bench import _stage

    return _stage(*args, timeout=timeout, module=STAGES_MODULE, env=broker.env())


def produce_consume(broker: BenchBroker, count: int, rounds: int) -> dict[str, Any]:
    """a. publish ``count`` trades through the role and through a bare producer (alternating rounds,
    each to a topic of its own); b. read them back through the role and a bare consumer."""
    names = [broker.topic(f"produce.{kind}.{i}") for i in range(rounds) for kind in ("role", "bare")]
    broker.create_topics(names)
    produced = _run(broker, "produce", str(count), ",".join(names))
    consumed = _run(broker, "consume", str(count), names[0], str(rounds))
    return {"produce": produced, "consume": consumed, "broker_peak_rss_mb": broker.peak_rss_mb()}


def end_to_end(broker: BenchBroker, workdir: Path, count: int, timeout: float = 900) -> dict[str, Any]:
    """c. a producer process publishing frames and trades as fast as it can, while an ingest process
    (KafkaSource + Ingester into a fresh chdb path) writes them: first publish -> last trade in silver."""
    trades_topic, raw_topic = broker.topic("e2e.trades"), broker.topic("e2e.trades.raw")
    broker.create_topics([trades_topic, raw_topic])
    log_path = workdir / "e2e-ingest.log"
    with log_path.open("w") as log:
        ingest = subprocess.Popen([sys.executable, "-m", STAGES_MODULE, "e2e-ingest", str(workdir / "e2e-kafka"),
                                   str(count), trades_topic, raw_topic], stdout=subprocess.PIPE, stderr=log,
                                  text=True, env=broker.env())
    try:
        assert ingest.stdout is not None
        line = ingest.stdout.readline()  # "ready": the consumer holds every partition
        if line.strip() != "ready":
            ingest.wait(30)
            raise RuntimeError(f"the ingest side did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
        broker_cpu = broker.cpu_s()
        produced = _run(broker, "e2e-produce", str(count), trades_topic, raw_topic, timeout=timeout)
        out, _ = ingest.communicate(timeout=timeout)
        broker_cpu = None if broker_cpu is None else round((broker.cpu_s() or 0) - broker_cpu, 2)
        if ingest.returncode != 0:
            raise RuntimeError(f"the ingest side failed:\n{log_path.read_text(errors='replace')[-3000:]}")
    finally:
        if ingest.poll() is None:
            ingest.kill()
            ingest.wait(30)
    ingested: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    first_publish_at = produced["first_publish_at"]
    seconds = ingested["done_at"] - first_publish_at
    # Time in reads after the first publish, less decoding: librdkafka's fetch and waiting for messages.
    reading = sum(max(0.0, end - max(start, first_publish_at)) for start, end in ingested.pop("read_spans"))
    ingested["seconds_in"]["fetch_wait"] = round(reading - ingested["seconds_in"].get("decode", 0.0), 3)
    return {"trades": count, "frames": produced["frames"], "seconds": round(seconds, 2),
            "trades_per_s": round(ingested["trades"] / seconds) if ingested["complete"] else None,
            "complete": ingested["complete"], "stored_trades": ingested["trades"],
            "producer": {k: v for k, v in produced.items() if k != "first_publish_at"},
            "ingest": {k: v for k, v in ingested.items() if k != "done_at"},
            "broker_cpu_s": broker_cpu, "broker_peak_rss_mb": broker.peak_rss_mb()}


def latency(broker: BenchBroker, workdir: Path, exchanges: list[str], seconds: float, rate: float) -> dict[str, Any]:
    """d. the platform (every role in one process, no API) with the Kafka bus, against the simulator, on
    the platform's own topic names (created here; on a configured broker, only where none exists)."""
    broker.create_topics(topics_for(exchanges))
    result = _run(broker, "latency-kafka", str(workdir / "latency-kafka"), str(seconds), str(rate))
    result["broker_peak_rss_mb"] = broker.peak_rss_mb()
    return result


def run_broker_stages(settings: Settings, workdir: Path, sizes: dict[str, Any]) -> dict[str, Any]:
    """Every broker stage, each against a fresh broker (or fresh topics on the configured one), next
    to its embedded-bus baseline; a stage that fails is reported as failed and the others still run."""
    from ticklake.bench import _stage

    reason = unavailable(settings)
    if reason is not None:
        return {"skipped": reason}
    count, seconds = int(sizes["bus_trades"]), float(sizes["bus_latency_s"])
    exchanges = list(settings.venues.enabled())
    report: dict[str, Any] = {"load_average_before": round(os.getloadavg()[0], 2)}

    def step(name: str, broker: BenchBroker, stage_dir: Path) -> dict[str, Any]:
        if name == "produce_consume":
            return produce_consume(broker, count, 3)
        if name == "e2e":
            # The embedded bus with the same rows, just before: the side-by-side baseline.
            print("bus: e2e, embedded bus ...", file=sys.stderr, flush=True)
            report["e2e_embedded"] = _stage("e2e-embedded", str(stage_dir / "embedded"), str(count),
                                            module=STAGES_MODULE)
            print("bus: e2e, Kafka bus ...", file=sys.stderr, flush=True)
            return end_to_end(broker, stage_dir, count)
        present = [] if broker.ours else broker.existing(topics_for(exchanges))
        if present:
            return {"skipped": f"the configured broker already has {', '.join(present)}: the latency stage would "
                               "mix simulated trades into them"}
        print("bus: latency, embedded bus ...", file=sys.stderr, flush=True)
        report["latency_embedded"] = _stage("latency", str(stage_dir / "embedded"), str(seconds), "500")
        print("bus: latency, Kafka bus ...", file=sys.stderr, flush=True)
        return latency(broker, stage_dir, exchanges, seconds, 500)

    for name in ("produce_consume", "e2e", "latency"):
        print(f"bus: {name} ...", file=sys.stderr, flush=True)
        stage_dir = workdir / f"bus-{name}"
        stage_dir.mkdir(parents=True, exist_ok=True)
        try:
            with bench_broker(settings, stage_dir) as broker:
                report["broker"] = broker.description
                report[name] = step(name, broker, stage_dir)
        except Exception as exc:  # a stage that failed (a KafkaException from the admin client...): report it, go on
            report[name] = {"error": f"{type(exc).__name__}: {exc}"[-3000:]}
    report["load_average_after"] = round(os.getloadavg()[0], 2)
    return report
