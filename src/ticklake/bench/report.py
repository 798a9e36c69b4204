"""The report ``ticklake bench`` prints: a few lines per stage, each figure next to its side-by-side
baseline and, where there is one, its target (``TARGETS``) and whether it meets it; then the whole
report as one JSON line.
"""

from __future__ import annotations

import json
from typing import Any

TARGETS = {
    "normalize_vs_decode": 0.50,
    "gaps_and_dedup_overhead": 0.20,
    "ingest_vs_direct_arrow": 0.60,
    "latency_p50_ms": 50.0,
    "latency_p99_ms": 200.0,
    "ohlcv_p99_ms": 20.0,
    "peak_rss_mb": 1536.0,
    "bus_e2e_trades_per_s": 100_000.0,
    "bus_latency_p50_ms": 50.0,
    "bus_latency_p99_ms": 250.0,
    "offload_vs_append": 0.70,
    "platform_cores_at_50": 0.25,
    "platform_cores_at_500": 0.5,
    "platform_rss_mb_at_50": 400.0,
    "platform_latency_p99_ms": 200.0,
    "candles_while_ingesting_p99_ms": 30.0,
    "candles_while_ingesting_rps": 200.0,
    "readers_latency_ratio": 1.5,
    "readers_backlog_s": 1.0,
    "stream_p50_ms": 50.0,
    "stream_p99_ms": 150.0,
    "export_vs_direct": 0.50,
    "export_rss_mb": 300.0,
}


def _verdict(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "meets" if ok else "MISSES"


def print_report(report: dict[str, Any]) -> None:
    lines = [f"ticklake bench — {report['date']} — {report['machine']}"]
    for stage, describe in (("normalize", _normalize_lines), ("handlers", _handler_lines),
                            ("ingest", _ingest_lines), ("latency", _latency_lines), ("serving", _serving_lines),
                            ("bus", _broker_lines), ("cold_tier", _cold_tier_lines),
                            ("completeness", _completeness_lines), ("platform", _platform_lines),
                            ("stream", _stream_lines), ("export", _export_lines)):
        if stage in report:
            lines += describe(report)
    if "segments" in report:
        from ticklake.bench.segment_stages import segment_lines

        lines += segment_lines(report)
    if "latency" in report and "serving" in report:
        lat, s = report["latency"], report["serving"]
        peak = max(lat["peak_rss_mb"], s["server_rss_mb"] or 0)
        lines += ["", f"peak RSS: platform (latency run) {lat['peak_rss_mb']} MB, API over {s['trades']:,} trades "
                  f"{s['server_rss_mb']} MB ({_verdict(peak, TARGETS['peak_rss_mb'], False)} ≤ 1536 MB)"]
    print("\n".join(lines))
    print("\n" + json.dumps(report))


def _broker_lines(report: dict[str, Any]) -> list[str]:
    return _bus_lines(report["bus"], report.get("ingest"))


def _normalize_lines(report: dict[str, Any]) -> list[str]:
    lines = ["", "normalize (frames as received from the simulator), per venue:"]
    for exchange, r in report["normalize"].items():
        lines.append(f"  {exchange:9s} {r['normalize_frames_per_s']:>10,} frames/s {r['normalize_trades_per_s']:>10,} "
                     f"trades/s | bare JSON decode {r['json_decode_frames_per_s']:>10,} frames/s | ratio "
                     f"{r['ratio']:.2f} ({_verdict(r['ratio'], TARGETS['normalize_vs_decode'], True)} ≥ 0.50)")
        overhead = r["gaps_and_dedup_overhead"]
        verdict = _verdict(overhead, TARGETS["gaps_and_dedup_overhead"], False)
        lines.append(f"  {'':9s} + gap tracking and batch dedup {r['with_gaps_and_dedup_frames_per_s']:>10,} frames/s: "
                     f"overhead {overhead:.0%} ({verdict} ≤ 20 %); gap tracking alone {r['gaps_only_overhead']:.0%}")
    return lines


def _handler_lines(report: dict[str, Any]) -> list[str]:
    h = report["handlers"]
    per_venue = ", ".join(f"{k} {v:,}" for k, v in h["trades_per_s"].items())
    return ["", f"feed handlers, {h['symbols_per_venue']} symbols per venue, simulator in another process, "
                f"{h['seconds']:g} s:",
            f"  {h['total_trades_per_s']:,} trades/s ({per_venue})"
            f" using {h['cpu_share']:.0%} of one core: {h['cpu_us_per_trade']} µs of CPU a trade"]


def _ingest_lines(report: dict[str, Any]) -> list[str]:
    i = report["ingest"]
    verdict = _verdict(i["ratio"], TARGETS["ingest_vs_direct_arrow"], True)
    return ["", f"ingest through raw → bronze → silver → gold, {i['trades']:,} trades in {i['batch']:,}-row batches:",
            f"  writer {i['writer_trades_per_s']:>10,} trades/s | direct Arrow insert "
            f"{i['direct_arrow_trades_per_s']:>10,} trades/s | ratio {i['ratio']:.2f} ({verdict} ≥ 0.60)"]


def _latency_lines(report: dict[str, Any]) -> list[str]:
    lat = report["latency"]
    return ["", f"trade → candle latency at {lat['trades_per_s']} trades/s for {lat['seconds']:g} s "
                f"({lat['trades']:,} trades):",
            f"  p50 {lat['p50_ms']} ms ({_verdict(lat['p50_ms'], TARGETS['latency_p50_ms'], False)} ≤ 50) | "
            f"p99 {lat['p99_ms']} ms ({_verdict(lat['p99_ms'], TARGETS['latency_p99_ms'], False)} ≤ 200) | "
            f"max {lat['max_ms']} ms"]


def _serving_lines(report: dict[str, Any]) -> list[str]:
    s = report["serving"]
    return ["", f"/v1/ohlcv, 500 one-minute candles over {s['trades']:,} stored trades, {s['requests']} requests:",
            f"  p50 {s['p50_ms']} ms | p99 {s['p99_ms']} ms "
            f"({_verdict(s['p99_ms'], TARGETS['ohlcv_p99_ms'], False)} ≤ 20) | {s['response_bytes']:,} bytes"]


def _stream_lines(report: dict[str, Any]) -> list[str]:
    s = report["stream"]
    lines = ["", "the live stream (/v1/stream), `ticklake up` at 500 trades/s, clients subscribed to one market's "
                 "trades and 1m candles: trade received -> the first candle update counting it delivered"]
    for key in ("one", "hundred"):
        r = s["latency"][key]
        verdict = (f" ({_verdict(r['p50_ms'] or 1e9, TARGETS['stream_p50_ms'], False)} ≤ 50, "
                   f"{_verdict(r['p99_ms'] or 1e9, TARGETS['stream_p99_ms'], False)} ≤ 150)")
        lines.append(f"  {r['clients']:>3} client{'s' if r['clients'] > 1 else ' '}: p50 {r['p50_ms']} ms, p99 "
                     f"{r['p99_ms']} ms, max {r['max_ms']} ms ({r['trades']} trades){verdict} | read back "
                     f"after the write: p50 {r['confirmed_p50_ms']} ms, p99 {r['confirmed_p99_ms']} ms")
    f = s["fanout"]
    lines.append(f"  fan-out to {f['clients']} clients, one process: {f['hub']['messages_per_s']:,} messages/s through "
                 f"the hub ({f['hub']['server_cores']} cores) | the same bytes sent straight to the sockets: "
                 f"{f['raw']['messages_per_s']:,} messages/s ({f['raw']['server_cores']} cores)")
    return lines


def _export_lines(report: dict[str, Any]) -> list[str]:
    e = report["export"]
    before = e["rss_before_mb"]
    lines = ["", f"file exports of {e['trades']:,} trades of one market over HTTP (`ticklake api` in a process of its "
                 f"own; RSS before {before['rss']} MB: anon {before.get('anon')}, file {before.get('file')}), next to "
                 "the same rows read straight out of ClickHouse in that format, same run:"]
    for fmt in ("csv", "parquet", "arrow"):
        r = e[fmt]
        lines.append(f"  {fmt:8s} {r['api_rows_per_s']:>10,} rows/s {r['api_mb_per_s']:>7} MB/s ({r['rows']:,} "
                     f"rows) | direct {r['direct_rows_per_s']:>10,} rows/s {r['direct_mb_per_s']:>7} MB/s | ratio "
                     f"{r['ratio']:.2f} "
                     f"({_verdict(r['ratio'], TARGETS['export_vs_direct'], True)} ≥ 0.50) | API peak RSS "
                     f"{r['peak_rss_mb']} MB ({_verdict(r['peak_rss_mb'], TARGETS['export_rss_mb'], False)} < 300)")
    c = e["client"]
    lines.append(f"  Python client, DataFrame of {c['rows']:,} trades (float64 columns): from an Arrow export "
                 f"{c['arrow_rows_per_s']:,} rows/s, Parquet {c['parquet_rows_per_s']:,} rows/s | JSON pages of 5,000 "
                 f"{c['json_rows_per_s']:,} rows/s; the same frames: {c['same_frames']}")
    return lines


def _platform_lines(report: dict[str, Any]) -> list[str]:
    p = report["platform"]
    lines = ["", "one small write (4 trades, one frame) through every layer, CPU per write by table, in one process:"]
    for name, label in (("packed", "parts packed into one file (migration 0005)"),
                        ("default", "ClickHouse's default parts (schema version 4)")):
        w = p["small_writes"][name]
        tables = ", ".join(f"{table} {ms}" for table, ms in w["by_table_ms"].items())
        lines.append(f"  {label:48s} {w['ms_per_write']:>6} ms ({tables}; {w['writes']} writes)")
    lines += ["", "the whole embedded platform (`ticklake up`: feeds, embedded bus, writer, API, offloader), the "
                  "simulator in another process, 80 markets; cores count the platform process and its cold-tier "
                  "worker:"]
    for rate, r in p["loads"].items():
        target = {"50": TARGETS["platform_cores_at_50"], "500": TARGETS["platform_cores_at_500"]}.get(rate)
        cores = f"{r['cores']:.3f} cores" + (f" ({_verdict(r['cores'], target, False)} ≤ {target:g})" if target else "")
        rss = f"RSS {r['rss_mb']} MB (anon {r.get('rss_anon_mb')}, file {r.get('rss_file_mb')})" + (
            f" ({_verdict(r['rss_mb'], TARGETS['platform_rss_mb_at_50'], False)} ≤ 400"
            f"{', pandas loaded' if r.get('pandas_loaded') else ''})" if rate == "50" else "")
        p99 = r["latency_p99_ms"]
        lines.append(f"  {int(rate):>5,} trades/s asked, {r['trades_per_s']:>5,} stored: {cores} | "
                     f"{r['cores_per_1000_trades_per_s']} cores per 1,000 trades/s | {rss} | {r['writes_per_s']} "
                     f"writes/s | trade → candle p50 {r['latency_p50_ms']} ms, p99 {p99} ms "
                     f"({_verdict(p99 or 1e9, TARGETS['platform_latency_p99_ms'], False)} ≤ 200), max "
                     f"{r['latency_max_ms']} ms")
    for rate, r in p["loads"].items():
        if r.get("worker_runs"):
            lines.append(f"    at {int(rate):,} trades/s the cold tier's worker process (lake/worker.py) ran "
                         f"{r['worker_runs']} time(s) before and during the window, {r['worker_cpu_s_so_far']} CPU-s "
                         f"in all (counted in the cores above when in the window: {r['worker_cores']}); in the "
                         f"window it ran {r['worker_alive_share']:.0%} of the time; its peak RSS since the start "
                         f"{r.get('worker_peak_ever_rss_mb')} MB, the platform's with it "
                         f"{r.get('with_worker_peak_ever_rss_mb')} MB")
    lines.append("  where the CPU goes (cores, per thread group) at " + ", ".join(f"{int(k):,}" for k in p["loads"])
                 + " trades/s:")
    groups = sorted({g for r in p["loads"].values() for g in r["cpu_by_thread"]},
                    key=lambda g: -max(r["cpu_by_thread"].get(g, 0.0) for r in p["loads"].values()))
    for group in groups:
        lines.append(f"    {group:38s} " + " | ".join(f"{r['cpu_by_thread'].get(group, 0.0):.3f}"
                                                     for r in p["loads"].values()))
    c = p["candles"]
    ing, live, idle = c["ingesting"]["load"], c["live"]["load"], c["idle"]["load"]
    lines += [f"  /v1/ohlcv, 500 one-minute candles of a quiet market, back to back on one connection, while ingesting "
              f"{c['ingesting']['trades_per_s']:,} trades/s: p50 {ing['p50_ms']} ms, p99 {ing['p99_ms']} ms "
              f"({_verdict(ing['p99_ms'] or 1e9, TARGETS['candles_while_ingesting_p99_ms'], False)} ≤ 30), "
              f"{ing['requests_per_s']} requests/s "
              f"({_verdict(ing['requests_per_s'], TARGETS['candles_while_ingesting_rps'], True)} ≥ 200) | idle: "
              f"p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms, {idle['requests_per_s']} requests/s",
              f"    the newest candles ({live['candles']}) of a market every batch writes, same connection: p50 "
              f"{live['p50_ms']} ms, p99 {live['p99_ms']} ms, {live['requests_per_s']} requests/s"]
    without, with_ = p["readers"]["without"], p["readers"]["with"]
    ratio = (with_["latency_p99_ms"] or 1e9) / (without["latency_p99_ms"] or 1)
    load = with_["load"]
    backlog = max(with_["backlog_max_s"] or 0.0, 0.0)
    health = ", ".join(f"{k} {v}" for k, v in load["health"].items())
    answers = ", ".join(f"{k} {v}" for k, v in sorted(load["statuses"].items()))
    lines += [f"  32 heavy readers (/v1/trades, 5,000 trades each, back to back) for {with_['seconds']:g} s at "
              f"{with_['trades_per_s']:,} trades/s, next to the same time without them:",
              f"    trade → candle p99 {with_['latency_p99_ms']} ms vs {without['latency_p99_ms']} ms: "
              f"{ratio:.2f} times "
              f"({_verdict(ratio, TARGETS['readers_latency_ratio'], False)} ≤ 1.5) | /health {health} | bus backlog "
              f"at most {with_['backlog_max']} messages = {backlog} s of trades "
              f"({_verdict(backlog, TARGETS['readers_backlog_s'], False)} < 1) | CPU {with_['cores']} cores "
              f"(without: {without['cores']})",
              f"    answers: {answers} (Retry-After: {', '.join(load['retry_after']) or 'none sent'})"]
    return lines


def _completeness_lines(report: dict[str, Any]) -> list[str]:
    check = report["completeness"]
    lines = ["", f"completeness check over {check['trades']:,} stored trades ({check['markets']} markets, "
                 f"{check['days']:g} days), per window checked:"]
    for w in check["windows"]:
        lines.append(f"  {w['window_s'] / 3600:>5g} h ({w['trades_in_window']:>10,} trades, {w['holes_found']} holes): "
                     f"check {w['check_ms']:>7} ms (holes {w['holes_ms']}, candles {w['gold_ms']}) | bare count of "
                     f"the window {w['count_ms']:>6} ms | {w['share_of_warehouse_thread_at_60s']:.2%} of the "
                     "warehouse thread every 60 s")
    return lines


def _bus_lines(bus: dict[str, Any], ingest: dict[str, Any] | None) -> list[str]:
    if "skipped" in bus:
        return ["", f"distributed mode (Kafka bus): {bus['skipped']}"]
    lines = ["", f"distributed mode, Kafka bus on loopback ({bus.get('broker', 'no broker started')}; 1-minute "
                 f"load average {bus['load_average_before']} before, {bus['load_average_after']} after):"]

    def failed(name: str) -> bool:
        if "error" in bus.get(name, {}):
            lines.append(f"  {name}: failed: {bus[name]['error'].strip().splitlines()[-1]}")
            return True
        return name not in bus

    if not failed("produce_consume"):
        p, c = bus["produce_consume"]["produce"], bus["produce_consume"]["consume"]
        lines += [
            f"  produce {p['messages']:,} trades ({p['value_bytes']} B, {p['compression']}, linger "
            f"{p['linger_ms']:g} ms, {p['partitions']} partitions), median of {p['rounds']} alternating rounds:",
            f"    KafkaProducerBus {p['role_msgs_per_s']:>10,} msgs/s ({p['role_cpu_us_per_msg']} µs CPU/msg) | bare "
            f"Producer, same bytes and config {p['bare_msgs_per_s']:>10,} msgs/s ({p['bare_cpu_us_per_msg']} µs) | "
            f"ratio {p['ratio']:.2f}; encoding alone {p['encode_msgs_per_s']:,}/s",
            f"  consume the same messages, {c['batch']:,}-message batches:",
            f"    KafkaSource      {c['role_msgs_per_s']:>10,} msgs/s ({c['role_cpu_us_per_msg']} µs CPU/msg) | bare "
            f"Consumer, no decoding       {c['bare_msgs_per_s']:>10,} msgs/s ({c['bare_cpu_us_per_msg']} µs) | "
            f"ratio {c['ratio']:.2f}; decoding alone {c['decode_msgs_per_s']:,}/s"]
    if not failed("e2e"):
        e = bus["e2e"]
        embedded = bus.get("e2e_embedded", {})
        rate = e["trades_per_s"]
        verdict = _verdict(rate, TARGETS["bus_e2e_trades_per_s"], True) if rate is not None else "INCOMPLETE"
        i, pr = e["ingest"], e["producer"]
        spent = ", ".join(f"{k} {v:.2f} s" for k, v in i["seconds_in"].items())
        lines += [
            f"  feed → broker → ClickHouse, {e['trades']:,} trades + {e['frames']:,} frames, producer and ingest in "
            f"separate processes, first publish → last trade in silver:",
            f"    {rate or 0:>10,} trades/s in {e['seconds']} s ({verdict} ≥ 100,000) | embedded bus, same rows "
            f"{embedded.get('trades_per_s', 0):>10,} trades/s | writer alone (ingest stage) "
            f"{ingest['writer_trades_per_s'] if ingest else 'not run'} trades/s",
            f"    ingest side: {spent} ({i['batches']} batches); CPU: ingest {i['cpu_s']} s, producer {pr['cpu_s']} s "
            f"(its publishing took {pr['flushed_s']} s)"
            + (f", broker {e['broker_cpu_s']} s" if e["broker_cpu_s"] is not None else "")]
    if not failed("latency"):
        lat, emb = bus["latency"], bus.get("latency_embedded", {})
        if "skipped" in lat:
            lines.append(f"  latency: skipped: {lat['skipped']}")
        else:
            lines += [
                f"  trade → candle at {lat['trades_per_s']} trades/s for {lat['seconds']:g} s, every role in one "
                "process through the broker:",
                f"    p50 {lat['p50_ms']} ms ({_verdict(lat['p50_ms'], TARGETS['bus_latency_p50_ms'], False)} ≤ 50) | "
                f"p99 {lat['p99_ms']} ms ({_verdict(lat['p99_ms'], TARGETS['bus_latency_p99_ms'], False)} ≤ 250) | "
                f"max {lat['max_ms']} ms; of the p50, {lat['until_write_p50_ms']} ms until its batch is written, "
                f"a write {lat['write_p50_ms']} ms",
                f"    embedded bus, same rate and duration: p50 {emb.get('p50_ms')} ms | p99 {emb.get('p99_ms')} ms | "
                f"max {emb.get('max_ms')} ms; {emb.get('until_write_p50_ms')} ms until written, a write "
                f"{emb.get('write_p50_ms')} ms"]
    rss = [bus[name].get("broker_peak_rss_mb") for name in ("produce_consume", "e2e", "latency") if name in bus]
    if any(rss):
        lines.append(f"  broker peak RSS per stage: {', '.join(f'{r} MB' for r in rss if r)}")
    return lines


def _cold_tier_lines(report: dict[str, Any]) -> list[str]:
    cold = report["cold_tier"]
    o = cold["offload"]
    lines = ["", f"cold tier (Iceberg, SQLite catalog and files on local disk), a day of {o['trades']:,} trades over "
                 f"{o['markets']} markets:",
             f"  offload_table into an empty table against a bare pyiceberg append of the same Arrow rows into an "
             f"empty table (one commit each), median of {next(iter(o['layers'].values()))['rounds']} alternating "
             "rounds:"]
    for name, r in o["layers"].items():
        unit = "candles" if name.startswith("gold") else "rows"
        verdict = _verdict(r["ratio"], TARGETS["offload_vs_append"], True)
        lines.append(f"    {name:14s} {r['rows']:>9,} {unit:7s} offload {r['offload_rows_per_s']:>9,}/s | append "
                     f"{r['append_rows_per_s']:>9,}/s | ratio {r['ratio']:.2f} ({verdict} ≥ 0.70); of an offload: "
                     f"reading {r['read_s']} s, the commit {r['commit_s']} s")
    year = cold["year"]
    lines.append(f"  /v1/ohlcv, a market's year of 1h candles ({year['markets']} markets, {year['candles']:,} candles "
                 f"offloaded in {year['commits']} commits), over HTTP:")
    for label, key, files in (("as offloaded", "as_offloaded", year["data_files"]),
                              ("compacted", "compacted", cold["compaction"]["files_after"])):
        s = cold[key]
        c, w = s["cold"], s["warm"]
        lines.append(f"    {label:12s} ({files} data files): the year ({s['candles']:,} candles in {s['pages']} "
                     f"pages of {s['page_limit']:,}) cold p50 {c['year']['p50_ms']} ms p99 {c['year']['p99_ms']} ms "
                     f"(a page p50 {c['page']['p50_ms']} ms) | warm p50 {w['year']['p50_ms']} ms p99 "
                     f"{w['year']['p99_ms']} ms | same candles: {s['identical']}; first cold fetch "
                     f"{s['first_fetch_ms']} ms")
    m = o["maintenance"]
    lines.append(f"  a day of offloads, {m['commits_per_table']} commits a table ({m['commit_ms']} ms a commit), then "
                 f"maintain (compaction, snapshot expiry, orphan removal) over {len(m['tables'])} tables: "
                 f"{m['maintain_s']} s; data files {m['files_before']} → {m['files_after']}")
    lines.append(f"    silver scan, one market, one hour ({m['scan_rows']:,} trades): {m['scan_before_ms']} ms "
                 f"before, {m['scan_after_ms']} ms after; per table: "
                 + ", ".join(f"{name} {t['seconds']} s" for name, t in m["tables"].items() if t["files_before"] > 1))
    return lines
