#!/usr/bin/env python3
"""CPU cost of re-resolving backend names (issue 19: 1,000 names every second
must cost the resolving thread < 5% of a core).

Starts dnsmasq on a free loopback port answering N names with TTL 0 (so
sluice asks each one again every dns_min_ttl = 1s) and sluice with one pool
of N name backends, then reads the control thread's CPU time (it runs the
resolver: /proc/PID/task/PID/stat, utime + stime) over a window.

    bench/dns_resolver_cost.py [--names 1000] [--seconds 30] [--sluice build/src/sluice]
"""
import argparse, os, socket, subprocess, sys, tempfile, time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid, tid):
    fields = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--sluice", default=os.path.join(os.path.dirname(__file__), "..", "build", "src", "sluice"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sluice-dns-bench.")
    with open(f"{tmp}/hosts", "w") as f:
        for i in range(args.names):
            f.write(f"127.0.{i // 250}.{1 + i % 250} n{i}.test\n")
    port = free_port()
    dns = subprocess.Popen(["dnsmasq", "--keep-in-foreground", "--log-facility=-", "--no-resolv", "--no-hosts",
                            f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces", "--local=/test/",
                            f"--addn-hosts={tmp}/hosts", "--pid-file=", "--user=root", "--cache-size=0",
                            "--local-ttl=0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    backends = ",\n".join(f'  {{ address = "n{i}.test:9" }}' for i in range(args.names))
    with open(f"{tmp}/sluice.toml", "w") as f:
        f.write(f'[global]\nworkers = 1\nresolvers = ["127.0.0.1:{port}"]\ndns_min_ttl = "1s"\n'
                f'[[listeners]]\nlisten = "127.0.0.1:0"\npool = "p"\n[pools.p]\nbackends = [\n{backends}\n]\n')
    time.sleep(0.5)
    sluice = subprocess.Popen([args.sluice, "-c", f"{tmp}/sluice.toml"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(5)  # every name answered once, the schedule settled
        start_cpu, start = cpu_seconds(sluice.pid, sluice.pid), time.monotonic()
        time.sleep(args.seconds)
        cpu, wall = cpu_seconds(sluice.pid, sluice.pid) - start_cpu, time.monotonic() - start
        print(f"{args.names} names re-resolved every 1s: control thread {cpu:.2f} s CPU in {wall:.1f} s "
              f"= {100 * cpu / wall:.2f}% of a core")
    finally:
        sluice.terminate()
        sluice.wait()
        dns.terminate()
        dns.wait()


if __name__ == "__main__":
    sys.exit(main())
