#!/usr/bin/env python3
"""One backend of a 10,000-backend ip_hash pool named by DNS changes address
(issue 19: "a change of one target rebuilds without stalling workers").

A DNS answer holds at most 65,535 bytes, so no single SRV or A answer can
list 10,000 targets (about 2,500 SRV records fit); a pool that large is
10,000 named backends. Starts dnsmasq on a free loopback port answering N
names (TTL 3 s; each on 127.X.Y.Z, all served by one sluice-echo bound to
0.0.0.0), and sluice with one ip_hash pool of those names. Clients connect through
sluice one after another, each sending a line and reading the echo, from
several source addresses (ip_hash keys on the client IP), the whole time.
Then one name's A record changes (dnsmasq re-reads its hosts file on SIGHUP)
and the script reports:
  - how long until sluice applied the answer (its log line), and the ip_hash
    rebuild time sluice logged for it (log_level = "debug");
  - the clients' connect+echo latency (median, 99th percentile, max) in the
    seconds before the change and from the change until 2 s after it was
    applied: a worker that stalled on a rebuild shows in the max.

    bench/dns_change_large_pool.py [--backends 10000] [--sluice build/src/sluice] [--echo build/src/tools/sluice-echo]
"""
import argparse, os, re, socket, statistics, subprocess, sys, tempfile, threading, time


def free_ports(count):
    """`count` distinct free ports (held open together, so never the same twice)."""
    held = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("0.0.0.0", 0))  # the wildcard: free on every loopback address
        held.append(s)
    ports = [s.getsockname()[1] for s in held]
    for s in held:
        s.close()
    return ports


class LogReader(threading.Thread):
    """Collects a process's stderr lines with their arrival time."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.lines, self.lock = stream, [], threading.Lock()

    def run(self):
        for raw in self.stream:
            with self.lock:
                self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip()))

    def wait_for(self, pattern, timeout, after=0.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for at, line in self.lines:
                    if at >= after and re.search(pattern, line):
                        return at, line
            time.sleep(0.02)
        return None


def hosts(backends, changes=None):
    """The hosts file: n<i>.test on its own 127.X.Y.Z; `changes` maps an index
    to "moved" (another address) or "gone" (no record: NXDOMAIN)."""
    changes = changes or {}
    out = []
    for i in range(backends):
        if changes.get(i) == "gone":
            continue
        n = i if changes.get(i) != "moved" else backends + i
        out.append(f"127.{1 + n // 62500}.{(n // 250) % 250}.{1 + n % 250} n{i}.test\n")
    return "".join(out)


def report(label, lo, hi, latencies):
    window = sorted(d * 1000 for t, d, ok in latencies if lo <= t < hi)
    failed = sum(1 for t, d, ok in latencies if lo <= t < hi and not ok)
    if not window:
        print(f"{label}: no sessions")
        return
    p99 = window[min(len(window) - 1, int(len(window) * 0.99))]
    print(f"{label}: {len(window)} sessions, {failed} failed; connect+echo median "
          f"{statistics.median(window):.2f} ms, p99 {p99:.2f} ms, max {window[-1]:.2f} ms")


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--backends", type=int, default=10000)
    ap.add_argument("--sluice", default=os.path.join(here, "..", "build", "src", "sluice"))
    ap.add_argument("--echo", default=os.path.join(here, "..", "build", "src", "tools", "sluice-echo"))
    ap.add_argument("--before", type=float, default=3.0, help="seconds of client latency before the change")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="sluice-srv-bench.")
    dns_port, echo_port, front = free_ports(3)
    echo = subprocess.Popen([args.echo, "--listen", f"0.0.0.0:{echo_port}", "--mode", "echo"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    if echo.poll() is not None:
        sys.exit(f"sluice-echo could not listen on 0.0.0.0:{echo_port}")

    with open(f"{tmp}/hosts", "w") as f:
        f.write(hosts(args.backends))
    dns = subprocess.Popen(["dnsmasq", "--keep-in-foreground", "--log-facility=-", "--no-resolv", "--no-hosts",
                            f"--port={dns_port}", "--listen-address=127.0.0.1", "--bind-interfaces",
                            "--local=/test/", f"--addn-hosts={tmp}/hosts", "--pid-file=", "--user=root",
                            "--cache-size=0", "--local-ttl=3"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    names = ",\n".join(f'  {{ address = "n{i}.test:{echo_port}" }}' for i in range(args.backends))
    with open(f"{tmp}/sluice.toml", "w") as f:
        f.write(f'[global]\nworkers = 2\nlog_level = "debug"\nresolvers = ["127.0.0.1:{dns_port}"]\n'
                f'dns_min_ttl = "1s"\n[[listeners]]\nname = "front"\nlisten = "127.0.0.1:{front}"\npool = "p"\n'
                f'[pools.p]\nbalance = "ip_hash"\nbackends = [\n{names}\n]\n')
    time.sleep(0.3)
    sluice = subprocess.Popen([args.sluice, "-c", f"{tmp}/sluice.toml"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    log = LogReader(sluice.stderr)
    log.start()
    launched = time.monotonic()
    latencies, stop = [], threading.Event()

    def clients():
        n = 0
        while not stop.is_set():
            source = f"127.0.0.{2 + n % 200}"
            n += 1
            started = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", front), timeout=5, source_address=(source, 0)) as s:
                    s.sendall(b"ping\n")
                    got = b""
                    while not got.endswith(b"\n"):
                        chunk = s.recv(64)
                        if not chunk:
                            break
                        got += chunk
                ok = got == b"ping\n"
            except OSError:
                ok = False
            latencies.append((started, time.monotonic() - started, ok))

    try:
        # Settled: every name answered, and no answer applied for 3 s (each
        # batch of first answers is a generation of its own).
        deadline = time.monotonic() + 180
        while True:
            with log.lock:
                applied_at = [at for at, l in log.lines if "answers applied" in l]
            if applied_at and time.monotonic() - applied_at[-1] > 3:
                break
            if time.monotonic() > deadline:
                sys.exit("the answers never settled:\n" + "\n".join(l for _, l in log.lines[-20:]))
            time.sleep(0.2)
        print(f"{args.backends} names resolved, last answer applied {applied_at[-1] - launched:.1f} s after "
              f"start; starting clients")
        load = threading.Thread(target=clients, daemon=True)
        load.start()
        time.sleep(args.before)
        report("before any change", time.monotonic() - args.before, time.monotonic(), latencies)
        steps = (("one name's address changes (same backend, no table build)", {args.backends // 2: "moved"}),
                 ("one name goes NXDOMAIN (it leaves the table: one build)", {args.backends // 2: "moved",
                                                                               args.backends // 3: "gone"}))
        for label, changes in steps:
            with open(f"{tmp}/hosts", "w") as f:
                f.write(hosts(args.backends, changes))
            changed_at = time.monotonic()
            dns.send_signal(1)  # SIGHUP: dnsmasq re-reads the hosts file
            applied = log.wait_for(rf"answers applied \(generation \d+\): {args.backends} backends, "
                                   rf"{args.backends} before", 60, after=changed_at)
            if not applied:
                sys.exit(f"{label}: never applied:\n" + "\n".join(l for _, l in log.lines[-20:]))
            time.sleep(2)
            print(f"{label}: applied {applied[0] - changed_at:.2f} s after the change (TTL 3 s)")
            for at, line in log.lines:
                if at >= changed_at and "ip_hash table built" in line:
                    print("  control thread: " + line.split("pool ", 1)[-1])
            report("  clients from the change until 2 s after", changed_at, applied[0] + 2, latencies)
        stop.set()
        load.join()
    finally:
        stop.set()
        sluice.terminate()
        sluice.wait()
        dns.terminate()
        echo.terminate()


if __name__ == "__main__":
    main()
