"""What an operator relies on in deploy/ (docs/deploy.md), checked without a Docker engine.

The compose file is read as Compose reads it: YAML with anchors and merge keys, ``${VAR...}``
interpolated from the variables of ``deploy/.env.example`` (the template every deployment starts
from).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOC = ROOT / "docs" / "deploy.md"

PLACEHOLDER = "change-me"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
# user:password@ in a URL
URL_PASSWORD = re.compile(r"://[^/:@\s]+:([^@\s]+)@")

# Every ticklake metric a role exposes to Prometheus in distributed mode: each has a dashboard panel.
METRICS = [
    "ticklake_feed_frames_total", "ticklake_feed_trades_total", "ticklake_feed_parse_errors_total",
    "ticklake_feed_reconnects_total", "ticklake_feed_connected", "ticklake_feed_lag_seconds",
    "ticklake_feed_gaps_total", "ticklake_feed_trades_unrecoverable_total", "ticklake_bus_depth",
    "ticklake_bus_produced_total", "ticklake_bus_delivery_failures_total", "ticklake_bus_producer_queue",
    "ticklake_bus_consumed_total", "ticklake_bus_rejected_total", "ticklake_bus_consumer_lag",
    "ticklake_ingest_rows_total", "ticklake_ingest_duplicates_total", "ticklake_dead_letters_total",
    "ticklake_ingest_errors_total", "ticklake_ingest_last_flush_timestamp_seconds",
    "ticklake_completeness_checks_total", "ticklake_completeness_missing_trades",
    "ticklake_completeness_trades_filled_total", "ticklake_completeness_trades_unrecoverable_total",
    "ticklake_trade_to_candle_seconds", "ticklake_api_requests_total", "ticklake_api_request_seconds",
    "ticklake_api_reads_refused_total", "ticklake_api_candle_cache_total", "ticklake_api_auth_refused_total",
    "ticklake_lake_offloaded_rows_total", "ticklake_lake_offload_commits_total",
    "ticklake_lake_offload_failures_total", "ticklake_lake_offload_lag_seconds",
    "ticklake_lake_last_offload_timestamp_seconds", "ticklake_lake_offload_seconds",
    "ticklake_lake_maintenance_runs_total", "ticklake_lake_maintenance_seconds",
    "ticklake_lake_data_files", "ticklake_lake_files_compacted_total",
    "ticklake_lake_snapshots_expired_total", "ticklake_lake_orphans_removed_total",
    "ticklake_lake_last_maintenance_timestamp_seconds", "ticklake_lake_audit_mismatched_partitions",
    "ticklake_lake_audit_rows_checked", "ticklake_lake_audit_last_run_timestamp_seconds",
    "ticklake_lake_audit_failures_total", "ticklake_feed_last_frame_timestamp_seconds",
    # Every role's process (prometheus_client's process collector, and its cgroup's memory limit).
    "ticklake_process_memory_limit_bytes", "process_resident_memory_bytes", "process_start_time_seconds",
]
TICKLAKE_ROLES = {"feed": 9464, "ingest": 9464, "api": 8000, "offload": 9464}


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip().strip("'\"")
    return values


def interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        current = env.get(name)
        if operator in (":-", "-"):
            return current if current or (operator == "-" and current is not None) else argument
        if operator in (":?", "?"):
            assert current, f"${{{name}}} is required ({argument}) but deploy/.env.example leaves it unset"
            return current
        return current or ""

    return VARIABLE.sub(substitute, value).replace("$$", "$")


def raw_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    resolved = interpolate(raw_compose(), env_example())
    assert isinstance(resolved, dict)
    return resolved


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert set(TICKLAKE_ROLES) | {"init", "redpanda", "clickhouse", "seaweedfs", "prometheus", "grafana"} <= set(found)
    return found


def memory_bytes(text: str | int) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)i?b?", str(text).strip().lower())
    assert match, f"unreadable memory limit {text!r}"
    number, unit = match.groups()
    return int(float(number) * 1024 ** " kmg".index(unit or " "))


def replicas(service: dict[str, Any]) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


def limits(service: dict[str, Any]) -> tuple[float, int]:
    found = service.get("deploy", {}).get("resources", {}).get("limits", {})
    return float(found["cpus"]), memory_bytes(found["memory"])


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def test_every_image_is_pinned_to_an_exact_tag(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image", "")
        assert image, f"{name} has no image"
        if "@sha256:" in image:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest" and not tag.startswith("latest"), f"{name}: image {image!r} floats on latest"
        # A tag that names a release, not a moving line: at least major.minor (redpanda v25.3.9, 26.9.6.6).
        assert re.search(r"\d+\.\d+", tag), f"{name}: image {image!r} is not pinned to a release"


def test_the_template_tags_the_ticklake_image_with_a_release() -> None:
    tag = env_example()["TICKLAKE_TAG"]
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-][0-9A-Za-z.-]+)?", tag), tag


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        if one_shot(service):
            # A one-shot's readiness is its exit code: whoever needs it waits for that, explicitly.
            assert check.get("disable") is True, f"{name} runs once: disable its healthcheck explicitly"
            continue
        test = check.get("test")
        assert test and not check.get("disable"), f"{name}: the healthcheck has no test"
        assert test[0] in ("CMD", "CMD-SHELL") if isinstance(test, list) else isinstance(test, str)


def test_the_roles_wait_for_init_and_the_services_they_use(services: dict[str, dict[str, Any]]) -> None:
    waited = {
        dependency: condition["condition"]
        for service in services.values()
        for dependency, condition in service.get("depends_on", {}).items()
    }
    assert waited["init"] == "service_completed_successfully"
    for role in TICKLAKE_ROLES:
        assert services[role]["depends_on"]["init"]["condition"] == "service_completed_successfully", role
    for dependency, condition in waited.items():
        if dependency != "init":
            assert condition == "service_healthy", f"something starts before {dependency} is healthy"
    init_runs = " ".join(services["init"]["entrypoint"] + services["init"]["command"])
    assert re.search(r"ticklake migrate\b.*&&.*ticklake topics\b", init_runs, re.DOTALL), init_runs


def test_every_service_has_cpu_and_memory_limits(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        cpus, memory = limits(service)
        assert 0 < cpus <= 4, f"{name}: cpus {cpus}"
        assert 64 * 1024**2 <= memory <= 8 * 1024**3, f"{name}: memory {memory}"


def test_the_limits_fit_the_host_even_with_three_ingesters(services: dict[str, dict[str, Any]]) -> None:
    def totals(ingesters: int) -> tuple[float, int]:
        """What runs at once: a one-shot (init) exits before any role starts."""
        cpu_total, memory_total = 0.0, 0
        for name, service in services.items():
            if one_shot(service):
                continue
            count = ingesters if name == "ingest" else replicas(service)
            cpus, memory = limits(service)
            cpu_total += cpus * count
            memory_total += memory * count
        return cpu_total, memory_total

    cpus, memory = totals(replicas(services["ingest"]))
    assert cpus <= 8 and memory <= 12 * 1024**3, (cpus, memory / 1024**3)
    cpus, memory = totals(3)
    assert cpus <= 16 and memory <= 40 * 1024**3, (cpus, memory / 1024**3)


def test_the_resource_table_in_the_docs_matches_the_limits(services: dict[str, dict[str, Any]]) -> None:
    rows = {
        match.group(1): (float(match.group(2)), float(match.group(3)))
        for match in re.finditer(r"^\| `(\w+)`[^|]*\| ([\d.]+) \| ([\d.]+) GiB \|", DOC.read_text(), re.MULTILINE)
    }
    assert set(rows) == set(services), set(rows) ^ set(services)
    for name, (cpus, gib) in rows.items():
        assert limits(services[name]) == (cpus, int(gib * 1024**3)), name
    total_row = r"^\| \*\*total\*\* \| \*\*([\d.]+)\*\* \| \*\*([\d.]+) GiB\*\* \|"
    total = re.search(total_row, DOC.read_text(), re.MULTILINE)
    assert total, "docs/deploy.md has no total row"
    assert float(total.group(1)) == sum(cpus for cpus, _ in rows.values())
    assert float(total.group(2)) == sum(gib for _, gib in rows.values())


def test_published_ports_bind_to_localhost_only(services: dict[str, dict[str, Any]]) -> None:
    published = {}
    for name, service in services.items():
        assert service.get("network_mode") != "host", f"{name} would bypass the port bindings"
        for port in service.get("ports", []):
            if isinstance(port, dict):
                host_ip, target = port.get("host_ip"), port["target"]
            else:
                parts = str(port).split(":")
                assert len(parts) == 3, f"{name}: {port!r} does not name a host address"
                host_ip, target = parts[0], parts[2]
            assert host_ip == "127.0.0.1", f"{name}: {port!r} is reachable from other machines"
            published[name] = int(str(target).split("/")[0])
    # Only the API, Grafana and Prometheus: the broker, the warehouse and the metrics stay inside.
    assert published == {"api": 8000, "grafana": 3000, "prometheus": 9090}


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


def test_no_secret_is_written_in_the_compose_file() -> None:
    # Before interpolation: a secret must come from deploy/.env, never from this file.
    for name, service in raw_compose()["services"].items():
        for key, value in environment_of(service).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[^}]+\}", value), f"{name}: {key} is not taken from deploy/.env"
            for password in URL_PASSWORD.findall(value):
                assert re.fullmatch(r"\$\{[^}]+\}", password), f"{name}: {key} carries a literal password"
    # The feed never uses ClickHouse: it does not get the password.
    assert "TICKLAKE_WAREHOUSE_URL" not in environment_of(raw_compose()["services"]["feed"])
    text = COMPOSE.read_text()
    assert not re.search(r"(?i)(password|secret)\s*[:=]\s*['\"]?(?!\$\{)[A-Za-z0-9+/]{8,}", text)


def test_the_env_template_holds_no_secret() -> None:
    values = env_example()
    secrets = {name: value for name, value in values.items() if SECRET_NAME.search(name)}
    assert {"CLICKHOUSE_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= set(secrets)
    for name, value in secrets.items():
        assert value == PLACEHOLDER, f"{name} in .env.example must be {PLACEHOLDER!r}"
    for name, value in values.items():
        # Nothing else that looks like a generated credential (long hex or base64).
        assert not re.fullmatch(r"[A-Za-z0-9+/=_-]{20,}", value), f"{name} looks like a secret"
    assert ".env" in (DEPLOY / ".gitignore").read_text().split(), "deploy/.env must be git-ignored"


def test_every_required_variable_is_in_the_template() -> None:
    required = {match.group(1) for match in VARIABLE.finditer(COMPOSE.read_text()) if match.group(2) in (":?", "?")}
    assert required <= set(env_example()), required - set(env_example())


def test_every_mounted_file_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"
        for env_file in service.get("env_file", []):
            path = env_file if isinstance(env_file, str) else env_file["path"]
            optional = isinstance(env_file, dict) and env_file.get("required") is False
            assert optional or (DEPLOY / path).exists(), f"{name} reads {path}, which does not exist"
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()


def test_prometheus_scrapes_every_role_and_service() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets: dict[str, int] = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                targets[name] = sd["port"]
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.partition(":")
                targets[host] = int(port)
    for role, port in TICKLAKE_ROLES.items():
        assert targets.get(role) == port, role
    assert {"redpanda", "clickhouse", "seaweedfs"} <= set(targets)
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_the_alert_rules_are_well_formed() -> None:
    rules = [rule for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
             for rule in group["rules"]]
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_the_dashboard_shows_every_metric() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "ticklake.json").read_text())
    expressions = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", []))
    missing = [metric for metric in METRICS if metric not in expressions]
    assert not missing, missing
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uids = {source["uid"] for source in datasource["datasources"]}
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in uids, panel["title"]


def test_the_alert_rules_name_only_metrics_ticklake_exposes() -> None:
    """A rule on a misspelled metric never fires: the old system's rules watched metrics nobody exposed."""
    from ticklake.ops.metrics import REGISTRY

    exposed = set()
    for family in REGISTRY.collect():
        exposed |= {sample.name for sample in family.samples} | {family.name}
    # Series that exist once labelled are not sampled before first use: take every suffix form.
    for family in REGISTRY.collect():
        exposed |= {f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_sum", "_count")}
    named = set(re.findall(r"\b(?:ticklake|process)_[a-z_]+", (DEPLOY / "prometheus" / "alerts.yml").read_text()))
    assert named and not named - exposed, sorted(named - exposed)


def test_the_cold_tier_roles_use_the_rest_catalog_on_seaweedfs(services: dict[str, dict[str, Any]]) -> None:
    seaweedfs = services["seaweedfs"]["command"]
    bucket = next(arg.split("=", 1)[1] for arg in seaweedfs if arg.startswith("-tableBucket="))
    # The catalog tells clients to reach S3 at its -ip: the service name is what the roles resolve.
    assert "-ip=seaweedfs" in seaweedfs and "-master.telemetry=false" in seaweedfs
    for role in ("offload", "api"):
        env = environment_of(services[role])
        assert env["TICKLAKE_LAKE__CATALOG"] == "rest", role
        assert env["TICKLAKE_LAKE__URI"] == "http://seaweedfs:8181", role
        assert env["TICKLAKE_LAKE__WAREHOUSE"] == f"s3://{bucket}", role  # one catalog per table bucket
        assert env["TICKLAKE_LAKE__S3_ENDPOINT"] == "http://seaweedfs:8333", role
    assert services["offload"]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    # The roles and SeaweedFS share one key pair, from deploy/.env.
    raw = raw_compose()["services"]
    weed_env, offload_env = environment_of(raw["seaweedfs"]), environment_of(raw["offload"])
    assert weed_env["AWS_ACCESS_KEY_ID"] == offload_env["TICKLAKE_LAKE__S3_ACCESS_KEY_ID"]
    assert weed_env["AWS_SECRET_ACCESS_KEY"] == offload_env["TICKLAKE_LAKE__S3_SECRET_ACCESS_KEY"]
    # Roles that never touch the cold tier do not get its secret.
    for role in ("feed", "ingest"):
        assert not any(key.startswith("TICKLAKE_LAKE__") for key in environment_of(services[role])), role
    assert "LAKE_S3_SECRET_KEY is still change-me" in " ".join(services["init"]["command"])
