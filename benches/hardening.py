#!/usr/bin/env python3
"""Issue 16's attacks on a real `perfvisor run`, for BENCHMARKS.md ("Hardening").

Usage: benches/hardening.py BINARY LOADGEN {query,query-all,query-max,conns,push}

Starts BINARY with a config in a temporary directory (one managed loadgen daemon, 100 ms
probes, API on 127.0.0.1), lets it collect for 8 s, then runs one attack from this machine
while polling /api/v1/status every 50 ms. Prints the RSS before and at peak (VmRSS from
/proc/PID/status), the /status latencies (median, max) and what the attack got. Traffic
goes to 127.0.0.1 only; the perfvisor process is stopped by its pid (SIGTERM, then SIGKILL)
and is killed early if its RSS passes 1.5 GiB. `conns` starts perfvisor under
`prlimit --nofile=$PV_NOFILE` (default 1024:8192, soft:hard).
"""
import json, os, signal, socket, subprocess, sys, tempfile, threading, time

ADMIN = "adm1n-token"
RSS_CAP = 1536 << 20


def rss(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def request(port, method, path, token=None, body=None, host=None, timeout=120):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    head = f"{method} {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    data = (body or "").encode()
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    head += "Connection: close\r\n\r\n"
    s.sendall(head.encode() + data)
    chunks = []
    while True:
        c = s.recv(1 << 20)
        if not c:
            break
        chunks.append(c)
    s.close()
    raw = b"".join(chunks)
    status = int(raw.split(b" ", 2)[1]) if raw else 0
    return status, raw.split(b"\r\n\r\n", 1)[-1]


def main():
    binary, loadgen, attack = sys.argv[1], sys.argv[2], sys.argv[3]
    d = tempfile.mkdtemp(prefix="pv-hardening-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token_line = f'token = "{ADMIN}"' if attack in ("conns", "push") else ""
    cfg = os.path.join(d, "pv.toml")
    open(cfg, "w").write(
        f'[supervisor]\ndatabase = "{d}/pv.db"\nprobe_interval = "100ms"\nhost_interval = "100ms"\n'
        f'listen = "127.0.0.1:{port}"\n{token_line}\n\n[[daemon]]\nname = "worker"\n'
        f'command = ["{loadgen}", "--cpu", "0"]\nstop_timeout = "2s"\n'
    )
    cmd = [binary, "run", "--config", cfg]
    if attack == "conns":
        cmd = ["prlimit", "--nofile=" + os.environ.get("PV_NOFILE", "1024:8192")] + cmd
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(d, "stderr"), "w"))
    pid = proc.pid
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if request(port, "GET", "/api/v1/status", ADMIN, timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        time.sleep(8)
        base = rss(pid)
        peak = [base]
        lat = []
        result = {}
        done = threading.Event()

        def run_attack():
            try:
                result.update(ATTACKS[attack](port, pid))
            except Exception as e:  # the attack's failure is a result too
                result["error"] = repr(e)
            done.set()

        t = threading.Thread(target=run_attack)
        started = time.time()
        t.start()
        while not done.is_set():
            t0 = time.time()
            try:
                st, _ = request(port, "GET", "/api/v1/status", ADMIN, timeout=30)
            except OSError as e:
                st = repr(e)
            lat.append((time.time() - t0, st))
            r = rss(pid)
            peak[0] = max(peak[0], r)
            if r > RSS_CAP:
                result["killed"] = f"RSS passed {RSS_CAP >> 20} MiB"
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        t.join(timeout=120)
        ms = sorted(x[0] * 1000 for x in lat) or [0]
        print(json.dumps({
            "attack": attack, "binary": binary,
            "rss_before_mib": round(base / 2**20, 1), "rss_peak_mib": round(peak[0] / 2**20, 1),
            "status_calls": len(lat), "status_median_ms": round(ms[len(ms) // 2], 1),
            "status_max_ms": round(ms[-1], 1),
            "status_codes": sorted({str(x[1]) for x in lat}),
            "attack_seconds": round(time.time() - started, 2), **result,
        }))
    finally:
        try:
            os.kill(pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except Exception:
            os.kill(pid, signal.SIGKILL)
            proc.wait()


def timed_query(port, params):
    """One query of the last 1,000 s at 1 ms steps (`params` picks the series), timed."""
    now = int(time.time() * 1000)
    t0 = time.time()
    st, body = request(port, "GET", f"/api/v1/query?{params}from={now - 1_000_000}&to={now}&step=1&agg=avg", ADMIN)
    return {"query_status": st, "answer_bytes": len(body), "query_seconds": round(time.time() - t0, 2),
            "answer_head": body[:160].decode(errors="replace")}


def query_one(port, pid):
    return timed_query(port, "metric=process.cpu.utilization_ratio&")


def query_all(port, pid):
    return timed_query(port, "")


def query_max(port, pid):
    """The largest queries the budget admits, back to back: one series at 100,000 buckets
    × 2 aggregations, and every host series at 10,000 buckets."""
    now = int(time.time() * 1000)
    t0 = time.time()
    out = {"statuses": [], "answer_bytes": []}
    for i in range(10):
        path = (f"/api/v1/query?metric=process.cpu.utilization_ratio&from={now - 1_000_000}&to={now}&step=10&agg=avg,max"
                if i % 2 == 0 else f"/api/v1/query?source=host&from={now - 1_000_000}&to={now}&step=100&agg=avg")
        st, body = request(port, "GET", path, ADMIN)
        out["statuses"].append(st)
        out["answer_bytes"].append(len(body))
    out["query_seconds"] = round(time.time() - t0, 2)
    return out


def conns(port, pid):
    idle = []
    for _ in range(2000):
        try:
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            break
    time.sleep(1)
    t0 = time.time()
    try:
        st, _ = request(port, "GET", "/api/v1/status", ADMIN, timeout=30)
    except OSError as e:
        st = repr(e)
    status_s = time.time() - t0
    try:
        rs, rb = request(port, "POST", "/api/v1/managed/worker/restart", ADMIN, body="", timeout=30)
    except OSError as e:
        rs, rb = repr(e), b""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    for s in idle:
        s.close()
    return {"idle_connections": len(idle), "status_with_idle": st, "status_with_idle_ms": round(status_s * 1000, 1),
            "restart_status": rs, "restart_body": rb[:160].decode(errors="replace"), "perfvisor_fds": fds}


def push(port, pid):
    out = {}
    st, _ = request(port, "POST", "/api/v1/metrics", ADMIN,
                    body='[{"metric": "process.memory.usage_bytes", "value": 9.9e12, "daemon": "worker"}]')
    out["forge_process_status"] = st
    st, _ = request(port, "POST", "/api/v1/metrics", ADMIN, body='[{"metric": "perfvisor.up", "value": 0}]')
    out["forge_up_status"] = st
    time.sleep(2)
    _, daemons = request(port, "GET", "/api/v1/daemons", ADMIN)
    out["daemons_rss_bytes"] = [d.get("rss_bytes") for d in json.loads(daemons)]
    _, metrics = request(port, "GET", "/metrics", ADMIN)
    out["perfvisor_up_lines"] = [l for l in metrics.decode().splitlines() if l.startswith("perfvisor_up")]
    accepted = 0
    for i in range(62):
        name = f"app.{i}." + "x" * (900 * 1024)
        st, _ = request(port, "POST", "/api/v1/metrics", ADMIN, body=json.dumps([{"metric": name, "value": 1}]))
        accepted += st == 202
    out["huge_names_accepted"] = accepted
    time.sleep(3)
    return out


ATTACKS = {"query": query_one, "query-all": query_all, "query-max": query_max, "conns": conns, "push": push}

if __name__ == "__main__":
    main()
