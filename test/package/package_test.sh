#!/usr/bin/env bash
# The Debian package, end to end: build it (scripts/package, lintian
# included), install it with dpkg, run sluice the way its unit says with the
# shipped /etc/sluice/sluice.toml, proxy through it, reload it with a good and
# with a broken config through the unit's ExecReload=, stop it, purge it.
#
# PID 1 here is not systemd, so the unit is EMULATED, not run by systemd:
# what this does for each directive of the installed unit file
#   User=/Group=                  setpriv --reuid/--regid sluice --init-groups
#   AmbientCapabilities=,
#   CapabilityBoundingSet=        setpriv --ambient-caps/--inh-caps/--bounding-set
#   NoNewPrivileges=              setpriv --no-new-privs
#   UMask=, LimitNOFILE=          umask, ulimit -n (at most the hard limit
#                                 when raising it is not allowed here)
#   RuntimeDirectory=, LogsDirectory= (and their *Mode=)
#                                 created owned by sluice with those modes
#   Type=notify                   a NOTIFY_SOCKET this script reads: READY=1
#   ExecStartPre=, ExecStart=, ExecReload= run as written (%t = /run)
#   KillSignal=, TimeoutStopSec=  SIGTERM, exit 0 within that time
#   SystemCallFilter=             every system call sluice made during the run
#                                 (strace -f) must be in the unit's allow list
#                                 as systemd-analyze expands it
# Not emulated: the mount namespace (ProtectSystem=strict, PrivateTmp, ...),
# ProtectProc/ProcSubset, RestrictAddressFamilies, MemoryDenyWriteExecute and
# the seccomp filter itself. Running as the unprivileged user covers most of
# what ProtectSystem guards here (sluice can write only its own directories).
# The exposure score is measured on the installed file with
# `systemd-analyze security --offline=true` and must be <= 2.0.
#
# Installs into the running system: it runs only as root, and under meson only
# when SLUICE_PACKAGE_TEST=1 (scripts/test sets it); otherwise it skips (77).
set -euo pipefail

source_root=${1:?usage: package_test.sh SOURCE_ROOT}
if [ "${SLUICE_PACKAGE_TEST:-0}" != 1 ]; then
  echo "SKIP: set SLUICE_PACKAGE_TEST=1 (scripts/test does) to build, install and purge the package"
  exit 77
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: installs a package, needs root"
  exit 77
fi

step() { echo "== $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

"$source_root/scripts/setup" strace python3 iproute2
for port in 5432 7000 7001 7002 9100; do
  if ss -Htanul "sport = :$port" | grep -q .; then
    fail "port $port is taken; the shipped sluice.toml and this test need it"
  fi
done
if dpkg-query -W -f='${Status}' sluice 2>/dev/null | grep -q "install ok installed"; then
  fail "a sluice package is already installed; this test would replace and purge it"
fi

tmp=$(mktemp -d /tmp/sluice-package-test.XXXXXX)
chmod 0755 "$tmp"
pids=()
cleanup() {
  local status=$?
  exec 2>/dev/null  # not bash's "Killed" notice for each helper below
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ -f /etc/sluice/sluice.toml.test-orig ]; then
    mv /etc/sluice/sluice.toml.test-orig /etc/sluice/sluice.toml
  fi
  if dpkg-query -W -f='${Status}' sluice 2>/dev/null | grep -q "installed"; then
    dpkg --purge sluice >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
  exit $status
}
trap cleanup EXIT

step "build"
deb=$("$source_root/scripts/package" | tail -n 1)
[ -f "$deb" ] || fail "scripts/package did not print a .deb path last (got '$deb')"
echo "$deb"
# scripts/package fails on lintian errors; this warning is checked too:
# every program the package installs has its man page.
missing_man=$(lintian --tags no-manual-page "$deb" || true)
[ -z "$missing_man" ] || fail "lintian: programs without a man page: $missing_man"

step "install"
dpkg -i "$deb"
for f in /usr/sbin/sluice /usr/bin/sluicectl /usr/bin/sluice-bench /usr/bin/sluice-echo; do
  [ -x "$f" ] || fail "$f is not installed"
done
for f in /lib/systemd/system/sluice.service /usr/lib/sysusers.d/sluice.conf \
         /usr/share/man/man8/sluice.8.gz /usr/share/man/man1/sluicectl.1.gz \
         /usr/share/man/man1/sluice-echo.1.gz /usr/share/man/man1/sluice-bench.1.gz; do
  [ -f "$f" ] || fail "$f is not installed"
done
dpkg-query -W -f='${Conffiles}\n' sluice | grep -q "^ /etc/sluice/sluice.toml " \
  || fail "/etc/sluice/sluice.toml is not a conffile"
getent passwd sluice | grep -q ":/usr/sbin/nologin$" || fail "no sluice system user: $(getent passwd sluice || true)"
getent group sluice >/dev/null || fail "no sluice group"
/usr/sbin/sluice --version | grep -q "^sluice " || fail "sluice --version"

unit=/lib/systemd/system/sluice.service
# directive NAME: the unit's values of NAME, one per line, %t expanded.
directive() { sed -n "s/^$1=//p" "$unit" | sed 's|%t|/run|g'; }
conf=/etc/sluice/sluice.toml

step "exposure"
exposure=$(systemd-analyze security --offline=true "$unit" 2>&1 | sed -n 's/.*Overall exposure level for sluice.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security --offline=true: $exposure"
[ -n "$exposure" ] || fail "systemd-analyze security printed no exposure"
python3 -c "import sys; sys.exit(0 if float('$exposure') <= 2.0 else 1)" || fail "exposure $exposure is above 2.0"

step "the unit's directories, user and limits"
[ "$(directive User)" = sluice ] && [ "$(directive Group)" = sluice ] || fail "unit User/Group are not sluice"
[ "$(directive RuntimeDirectory)" = sluice ] && [ "$(directive LogsDirectory)" = sluice ] \
  || fail "unit RuntimeDirectory/LogsDirectory are not sluice"
install -d -o sluice -g sluice -m "$(directive RuntimeDirectoryMode)" /run/sluice
install -d -o sluice -g sluice -m "$(directive LogsDirectoryMode)" /var/log/sluice
umask_value=$(directive UMask)
nofile=$(directive LimitNOFILE)
caps=$(directive AmbientCapabilities | tr 'A-Z' 'a-z' | sed 's/cap_//g; s/ /,+/g')
[ "$(directive CapabilityBoundingSet | tr 'A-Z' 'a-z' | sed 's/cap_//g; s/ /,+/g')" = "$caps" ] \
  || fail "the test assumes CapabilityBoundingSet= equals AmbientCapabilities="
[ "$(directive NoNewPrivileges)" = yes ] || fail "NoNewPrivileges is not yes"
# as_unit COMMAND...: runs COMMAND with the unit's credentials.
as_unit() {
  # Raising the hard limit needs CAP_SYS_RESOURCE, which a container may
  # lack; then the machine's hard limit stands in for LimitNOFILE=.
  (umask "$umask_value"; ulimit -n "$nofile" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
   exec setpriv --reuid=sluice --regid=sluice --init-groups --no-new-privs \
     --inh-caps="-all,+$caps" --ambient-caps="-all,+$caps" --bounding-set="-all,+$caps" -- "$@")
}

step "ExecStartPre: $(directive ExecStartPre)"
# shellcheck disable=SC2046 # the unit's command line, split as systemd does for these
as_unit $(directive ExecStartPre)

step "backends for the shipped config's echo pool"
for port in 7001 7002; do
  /usr/bin/sluice-echo --udp --listen "127.0.0.1:$port" >"$tmp/echo-$port.log" 2>&1 &
  pids+=($!)
done
wait_for 10 grep -q "listening on" "$tmp/echo-7001.log" || fail "sluice-echo 7001 did not start"
wait_for 10 grep -q "listening on" "$tmp/echo-7002.log" || fail "sluice-echo 7002 did not start"

step "ExecStart: $(directive ExecStart)"
# Type=notify: sluice reports READY=1 on this socket once it accepts.
python3 - "$tmp/notify" >"$tmp/notify.log" <<'EOF' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
while True:
    print(s.recv(4096).decode().replace("\n", " "), flush=True)
EOF
pids+=($!)
wait_for 10 test -S "$tmp/notify" || fail "no notify socket"
# shellcheck disable=SC2046
NOTIFY_SOCKET="$tmp/notify" strace -f -qq -o "$tmp/strace" \
  bash -c "$(declare -f as_unit); umask_value=$umask_value nofile=$nofile caps=$caps; as_unit \"\$@\"" \
  as_unit $(directive ExecStart) >"$tmp/sluice.log" 2>&1 &
main=$!
pids+=($main)
wait_for 20 grep -q "READY=1" "$tmp/notify.log" || { cat "$tmp/sluice.log"; fail "sluice did not notify READY=1"; }
sluice_pid=$(pgrep -u sluice -x sluice) || fail "no sluice process running as user sluice"
echo "sluice pid $sluice_pid: $(grep -E '^(Uid|CapAmb|CapBnd|NoNewPrivs)' /proc/$sluice_pid/status | tr '\t\n' '  ')"
[ "$(stat -c '%U %a' /run/sluice/admin.sock)" = "sluice 660" ] \
  || fail "admin socket: $(stat -c '%U %a' /run/sluice/admin.sock)"

# udp_echo TEXT: one datagram through the echo-udp listener, its reply printed.
udp_echo() {
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
s.sendto(sys.argv[1].encode(), ("127.0.0.1", 7000))
try:
    print(s.recv(4096).decode())
except OSError:
    sys.exit(1)
EOF
}
proxies() { [ "$(udp_echo "$1" 2>/dev/null)" = "$1" ]; }

step "proxy"
wait_for 20 proxies "through the package" || { cat "$tmp/sluice.log"; fail "no echo through 127.0.0.1:7000"; }
# The postgres listener's backends are documentation addresses: the session
# fails to connect, and its access log line lands in LogsDirectory.
python3 - <<'EOF'
import socket
s = socket.create_connection(("127.0.0.1", 5432))
s.settimeout(30)
try:
    s.recv(1)  # sluice closes once every backend failed to connect
except OSError:
    pass
EOF
wait_for 30 test -s /var/log/sluice/postgres.log || { cat "$tmp/sluice.log"; fail "nothing in /var/log/sluice/postgres.log"; }
[ "$(stat -c '%U %a' /var/log/sluice/postgres.log)" = "sluice 640" ] \
  || fail "access log: $(stat -c '%U %a' /var/log/sluice/postgres.log), expected sluice 640"
echo "access log: $(cat /var/log/sluice/postgres.log)"

step "ExecReload with the shipped config: $(directive ExecReload)"
# shellcheck disable=SC2046
reply=$(as_unit $(directive ExecReload)) || fail "reload of the shipped config failed: $reply"
echo "$reply"
[[ "$reply" == "reload ok (generation 2)" ]] || fail "unexpected reload reply: $reply"

step "ExecReload with a broken config"
cp -p "$conf" "$conf.test-orig"
sed -i 's/^balance = "ip_hash"$/balance = "fastest"/' "$conf"
cmp -s "$conf" "$conf.test-orig" && fail "could not break $conf"
set +e
# shellcheck disable=SC2046
reply=$(as_unit $(directive ExecReload))
status=$?
set -e
echo "exit $status: $reply"
[ $status -eq 1 ] || fail "ExecReload exited $status for a rejected config, expected 1"
grep -q "^error: reload failed, the running configuration stays (generation 2)$" <<<"$reply" || fail "no 'reload failed' line"
grep -q "^$conf:[0-9]*:[0-9]*: .*fastest" <<<"$reply" || fail "the reply does not name $conf:LINE:COL and the bad value"
mv "$conf.test-orig" "$conf"
kill -0 "$sluice_pid" || fail "sluice died after the rejected reload"
proxies "still serving" || fail "no echo after the rejected reload"

step "stop (KillSignal=$(directive KillSignal))"
kill -TERM "$sluice_pid"
stop_timeout=$(directive TimeoutStopSec | tr -d s)
status=0
wait_for "$stop_timeout" sh -c "! kill -0 $sluice_pid 2>/dev/null" || fail "sluice did not stop within ${stop_timeout}s"
wait "$main" || status=$?
[ $status -eq 0 ] || { cat "$tmp/sluice.log"; fail "sluice exited $status after SIGTERM"; }

step "SystemCallFilter: $(directive SystemCallFilter | tr '\n' ' ')"
python3 - "$tmp/strace" "$(directive SystemCallFilter | tr '\n' ';')" <<'EOF'
import re, subprocess, sys
# Groups as this systemd defines them: "@name" header, then members, which
# may be other groups.
groups, current = {}, None
for line in subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True,
                           check=True).stdout.splitlines():
    if line.startswith("@"):
        current = groups.setdefault(line.strip(), set())
    elif current is not None and line.strip() and not line.strip().startswith("#"):
        current.add(line.strip())
def expand(name, seen=()):
    if not name.startswith("@"):
        return {name}
    return set().union(*(expand(m, seen + (name,)) for m in groups[name] if m not in seen))
allowed = set()
for rule in filter(None, sys.argv[2].split(";")):
    deny = rule.startswith("~")
    names = set().union(*(expand(n) for n in rule.lstrip("~").split()))
    allowed = allowed - names if deny else allowed | names
# strace -f lines: "PID name(args" or "PID <... name resumed>". The first
# process is bash; the calls a process makes before it execs
# /usr/sbin/sluice are setpriv's; every process first seen after that exec
# is a thread of sluice.
used, in_sluice, seen, first, exec_seen = set(), set(), set(), None, False
for line in open(sys.argv[1]):
    m = re.match(r"(\d+)\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", line)
    if not m:
        continue
    pid, name = m.groups()
    first = first or pid
    if name == "execve" and 'execve("/usr/sbin/sluice",' in line:
        in_sluice.add(pid)
        exec_seen = True
        continue
    if exec_seen and pid not in seen and pid != first:
        in_sluice.add(pid)
    seen.add(pid)
    if pid in in_sluice:
        used.add(name)
if not used:
    sys.exit("strace saw no system call of sluice")
denied = sorted(used - allowed)
print(f"sluice made {len(used)} distinct system calls; outside the filter: {denied or 'none'}")
sys.exit(1 if denied else 0)
EOF

step "purge"
dpkg --purge sluice
for f in /usr/sbin/sluice /usr/bin/sluicectl /lib/systemd/system/sluice.service /etc/sluice/sluice.toml /var/log/sluice; do
  [ ! -e "$f" ] || fail "$f is still there after purge"
done
echo "package test: ok"
