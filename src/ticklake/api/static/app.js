// The live candlestick page: history from /v1/ohlcv (older pages as the chart is scrolled back),
// live updates from /v1/stream. Every candle drawn is the warehouse's; the open one is drawn apart.
"use strict";

const TIMEFRAMES = { "1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "1d": 86400 };
const PAGE = 500;
const CLOSE_GRACE_S = 5;  // as the server: a bucket with no later trade is closed 5 s after its end

const state = {
  exchange: null, symbol: null, timeframe: "1m",
  candles: new Map(),  // bucket start (RFC 3339) -> {time, open, high, low, close, volume, trades, closed}
  generation: 0,       // bumped at every switch: answers for an older selection are ignored
  ws: null, retryMs: 500, status: "connecting", updates: 0,
  loadingOlder: false, oldestReached: false, drawPending: false,
  userRange: null,     // the x range the user zoomed or scrolled to, if any
};

const chart = document.getElementById("chart");
const marketSelect = document.getElementById("market");
const timeframeSelect = document.getElementById("timeframe");

// For tests and for the curious: what the page holds.
window.ticklake = {
  candles: () => sorted().map((c) => ({ ...c })),
  status: () => state.status,
  updates: () => state.updates,
  selection: () => ({ exchange: state.exchange, symbol: state.symbol, timeframe: state.timeframe }),
};

// An API that asks for keys (beyond loopback) answers 401: the page then asks for one, keeps it in
// this browser (localStorage), and sends it as X-API-Key (on the stream, which takes no header from a
// browser, as the api_key parameter).
const KEY_ITEM = "ticklake.apiKey";

async function getJSON(url) {
  for (;;) {
    const key = localStorage.getItem(KEY_ITEM);
    const response = await fetch(url, key ? { headers: { "X-API-Key": key } } : {});
    const body = await response.json();
    if (response.status === 401) {
      await askForKey(body.error ? body.error.message : "this API needs a key");
      continue;
    }
    if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
    return body;
  }
}

function askForKey(reason) {
  const form = document.getElementById("keyform");
  const input = document.getElementById("apikey");
  form.hidden = false;
  setStatus("behind", reason);
  input.focus();
  return new Promise((resolve) => {
    form.onsubmit = (event) => {
      event.preventDefault();
      if (!input.value.trim()) return;
      localStorage.setItem(KEY_ITEM, input.value.trim());
      input.value = "";
      form.hidden = true;
      resolve();
    };
  });
}

function sorted() {
  return [...state.candles.values()].sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
}

function put(candle, closed) {
  state.candles.set(candle.time, {
    time: candle.time, open: candle.open, high: candle.high, low: candle.low, close: candle.close,
    volume: candle.volume, trades: candle.trades, closed,
  });
}

function endsBy(time, seconds) {
  return Date.parse(time) / 1000 + TIMEFRAMES[state.timeframe] <= seconds;
}

function setStatus(status, detail) {
  state.status = status;
  const badge = document.getElementById("status");
  badge.textContent = status;
  badge.className = status;
  document.getElementById("detail").textContent = detail || "";
}

function query(params) {
  return new URLSearchParams({ exchange: state.exchange, symbol: state.symbol, timeframe: state.timeframe, ...params });
}

async function init() {
  const { symbols } = await getJSON("/v1/symbols");
  const markets = symbols.filter((m) => m.trades > 0 || m.configured);
  for (const m of markets) {
    const option = document.createElement("option");
    option.value = `${m.exchange}|${m.symbol}`;
    option.textContent = `${m.exchange} · ${m.symbol}`;
    marketSelect.appendChild(option);
  }
  const asked = new URLSearchParams(location.search);
  const wanted = asked.get("exchange") && asked.get("symbol") ? `${asked.get("exchange")}|${asked.get("symbol")}` : null;
  const withTrades = markets.find((m) => m.trades > 0);
  marketSelect.value = wanted && markets.some((m) => `${m.exchange}|${m.symbol}` === wanted) ? wanted
    : withTrades ? `${withTrades.exchange}|${withTrades.symbol}` : marketSelect.value;
  if (asked.get("timeframe") in TIMEFRAMES) timeframeSelect.value = asked.get("timeframe");
  marketSelect.addEventListener("change", select);
  timeframeSelect.addEventListener("change", select);
  await select();
}

async function select() {
  [state.exchange, state.symbol] = marketSelect.value.split("|");
  state.timeframe = timeframeSelect.value;
  const generation = ++state.generation;
  if (state.ws) state.ws.close();
  state.candles.clear();
  state.oldestReached = false;
  state.userRange = null;
  history.replaceState(null, "", `?${query({})}`);
  setStatus("behind", "loading history");
  const body = await getJSON(`/v1/ohlcv?${query({ limit: PAGE })}`);
  if (generation !== state.generation) return;
  const now = Date.now() / 1000;
  body.candles.forEach((c, i) => put(c, i < body.candles.length - 1 || endsBy(c.time, now - CLOSE_GRACE_S)));
  draw();
  connect(generation);
}

async function loadOlder() {
  if (state.loadingOlder || state.oldestReached || !state.candles.size) return;
  state.loadingOlder = true;
  const generation = state.generation;
  try {
    const oldest = sorted()[0].time;
    const body = await getJSON(`/v1/ohlcv?${query({ end: oldest, limit: PAGE })}`);
    if (generation !== state.generation) return;
    if (!body.candles.length) state.oldestReached = true;
    body.candles.forEach((c) => put(c, true));
    draw();
  } finally {
    state.loadingOlder = false;
  }
}

function connect(generation) {
  const key = localStorage.getItem(KEY_ITEM);
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/stream`
                           + (key ? `?api_key=${encodeURIComponent(key)}` : ""));
  state.ws = ws;
  ws.onopen = () => {
    const newest = sorted().pop();
    // Catch up from the newest candle held: nothing missed while away.
    ws.send(JSON.stringify({ op: "subscribe", channel: "candles", exchange: state.exchange, symbol: state.symbol,
                             timeframe: state.timeframe, ...(newest ? { since: newest.time } : {}) }));
    state.retryMs = 500;
  };
  ws.onmessage = (event) => {
    if (generation !== state.generation) return;
    const message = JSON.parse(event.data);
    if (message.type === "subscribed") {
      setStatus("live", "");
    } else if (message.type === "candle") {
      put(message.candle, message.closed);
      state.updates += 1;
      if (!message.catch_up) setStatus("live", `last update ${new Date().toLocaleTimeString()}`);
      scheduleDraw();
    } else if (message.type === "error") {
      setStatus("behind", message.error);
    }
  };
  ws.onclose = (event) => {
    if (generation !== state.generation) return;
    setStatus("reconnecting", event.reason || "connection lost");
    setTimeout(() => { if (generation === state.generation) connect(generation); }, state.retryMs);
    state.retryMs = Math.min(state.retryMs * 2, 10000);
  };
}

// The newest 90 buckets, and room for the next few: a lone candle still looks like one.
function initialRange(candles) {
  const seconds = TIMEFRAMES[state.timeframe];
  const last = candles.length ? Date.parse(candles[candles.length - 1].time) : Date.now();
  return [new Date(last - 90 * seconds * 1000).toISOString(), new Date(last + 4 * seconds * 1000).toISOString()];
}

function scheduleDraw() {
  if (state.drawPending) return;
  state.drawPending = true;
  requestAnimationFrame(() => { state.drawPending = false; draw(); });
}

function draw() {
  const candles = sorted();
  const closed = candles.filter((c) => c.closed);
  const open = candles.filter((c) => !c.closed);
  const ohlc = (list) => ({
    x: list.map((c) => c.time), open: list.map((c) => c.open), high: list.map((c) => c.high),
    low: list.map((c) => c.low), close: list.map((c) => c.close),
  });
  const traces = [
    { type: "candlestick", name: "closed", ...ohlc(closed), xaxis: "x", yaxis: "y2",
      increasing: { line: { color: "#2ecc71" }, fillcolor: "#2ecc71" },
      decreasing: { line: { color: "#e74c3c" }, fillcolor: "#e74c3c" } },
    { type: "candlestick", name: "open (still trading)", ...ohlc(open), xaxis: "x", yaxis: "y2",
      increasing: { line: { color: "#8fd3ff", width: 2 }, fillcolor: "rgba(143,211,255,0.25)" },
      decreasing: { line: { color: "#ffb36b", width: 2 }, fillcolor: "rgba(255,179,107,0.25)" } },
    { type: "bar", name: "volume", x: candles.map((c) => c.time), y: candles.map((c) => c.volume),
      xaxis: "x", yaxis: "y", opacity: 0.7,
      marker: { color: candles.map((c) => (!c.closed ? "#8fd3ff" : Number(c.close) >= Number(c.open) ? "#2ecc71" : "#e74c3c")) } },
  ];
  const layout = {
    paper_bgcolor: "#101214", plot_bgcolor: "#101214", font: { color: "#d7dade" },
    margin: { l: 60, r: 20, t: 30, b: 40 }, showlegend: true, legend: { orientation: "h", x: 0, y: 1.06 },
    // Zoom and scroll survive updates; a new selection starts afresh.
    uirevision: `${state.exchange}|${state.symbol}|${state.timeframe}|${state.generation}`,
    // The newest buckets until the user zooms or scrolls; then what the user chose.
    xaxis: { rangeslider: { visible: false }, type: "date", gridcolor: "#22262c",
             range: state.userRange || initialRange(candles) },
    yaxis: { domain: [0, 0.2], gridcolor: "#22262c", tickformat: "~g", autorange: true },
    yaxis2: { domain: [0.25, 1], gridcolor: "#22262c", tickformat: "~g", autorange: true },
  };
  Plotly.react(chart, traces, layout, { responsive: true, displaylogo: false });
}

init().then(() => {
  chart.on("plotly_relayout", (event) => {
    if (event["xaxis.autorange"]) { state.userRange = null; return; }
    const start = event["xaxis.range[0]"] || (event["xaxis.range"] && event["xaxis.range"][0]);
    const end = event["xaxis.range[1]"] || (event["xaxis.range"] && event["xaxis.range"][1]);
    if (!start || !end) return;
    state.userRange = [start, end];
    const oldest = sorted()[0];
    if (oldest && new Date(start) <= new Date(oldest.time)) loadOlder();  // scrolled back: the page before
  });
}).catch((error) => setStatus("behind", String(error)));
