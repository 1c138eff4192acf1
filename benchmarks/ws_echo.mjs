// An independent WebSocket echo client (Node's built-in WebSocket, undici's), for
// benchmarks/ws_client_cost.py: N clients each send M text messages of S bytes, each after
// the echo of the one before, timed from the first send to the last echo. Prints one JSON
// line: {ok, errors, wall_s, msgs_per_s, p50_ms, cpu_s}.
//     node --experimental-websocket benchmarks/ws_echo.mjs URL N M S
const [url, n, m, size] = [process.argv[2], ...process.argv.slice(3).map(Number)];
const text = "x".repeat(size);
const timeoutMs = 10000;

function open() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error("handshake failed"));
  });
}

function client(ws, latencies) {
  return new Promise((resolve) => {
    let sent = 0, start = 0, errors = 0;
    const timer = setTimeout(() => { errors = m - sent + 1; resolve(errors); }, timeoutMs);
    const next = () => {
      if (sent === m) { clearTimeout(timer); resolve(errors); return; }
      sent += 1; start = performance.now(); ws.send(text);
    };
    ws.onmessage = (event) => {
      latencies.push(performance.now() - start);
      if (event.data !== text) errors += 1;
      next();
    };
    next();
  });
}

const sockets = await Promise.all(Array.from({ length: n }, open));
const latencies = [];
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const errors = (await Promise.all(sockets.map((ws) => client(ws, latencies))))
  .reduce((a, b) => a + b, 0);
const wall = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
sockets.forEach((ws) => ws.close());
latencies.sort((a, b) => a - b);
console.log(JSON.stringify({
  ok: latencies.length - errors, errors, wall_s: wall,
  msgs_per_s: (latencies.length - errors) / wall,
  p50_ms: latencies[Math.floor(latencies.length / 2)] ?? null,
  cpu_s: (cpu.user + cpu.system) / 1e6,
}));
process.exit(0);
