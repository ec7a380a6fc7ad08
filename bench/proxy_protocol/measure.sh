#!/usr/bin/env bash
# Syscalls sluice makes per connection, counted by strace -c -f on the whole
# process (one worker) while client.py opens N connections one after another
# (bench/README.md, "PROXY protocol cost"). Needs a backend on 127.0.0.1:47100
# (sluice-echo --listen 127.0.0.1:47100) and ports 47101 free.
# usage: measure.sh BUILD_DIR NAME CLIENT_MODE LISTENER_KEYS POOL_KEYS
#   CLIENT_MODE: plain | header (the client sends a v1 PROXY header first)
#   WAIT=1: the client pauses 20 ms after connecting (a server-speaks-first
#   shape: nothing from the client when the backend connect completes)
set -e; trap "kill \$SP 2>/dev/null" EXIT
B=$1; NAME=$2; MODE=$3; LKEYS=$4; PKEYS=$5; N=${N:-300}
cat > /tmp/sluice-pp-$NAME.toml <<EOT
[global]
workers = 1
[[listeners]]
name = "front"
listen = "127.0.0.1:47101"
pool = "p"
$LKEYS
[pools.p]
$PKEYS
backends = [{ address = "127.0.0.1:47100" }]
EOT
$B/src/sluice -c /tmp/sluice-pp-$NAME.toml 2>/tmp/sluice-pp-$NAME.log & SP=$!
sleep 0.5
python3 "$(dirname "$0")/client.py" 47101 20 $MODE   # warm up
strace -c -f -q -p $SP -o /tmp/sluice-pp-$NAME.strace & ST=$!
sleep 0.5
python3 "$(dirname "$0")/client.py" 47101 $N $MODE
sleep 0.3
kill -INT $ST; wait $ST 2>/dev/null || true
kill $SP; wait $SP 2>/dev/null || true
awk 'NR>2 && $NF!="total" && $1!~/^-/ {printf " %s=%.2f", $NF, $4/'$N'}' /tmp/sluice-pp-$NAME.strace | tr ' ' '\n' | sort | tr '\n' ' '; echo
total=$(awk '/^100.00/ {print $4}' /tmp/sluice-pp-$NAME.strace)
echo "$NAME: $total syscalls for $N connections = $(echo "scale=2; $total / $N" | bc) per connection"
