#!/usr/bin/env bash
# Run the app once per strategy on a local simulation federation and print a table.
#   bash run_comparison.sh [results-dir]      (env: STRATEGIES, ROUNDS, CLIENTS, BYZANTINE, ATTACK)
# Offline: Flower's telemetry and update checks are off, its home is ./.flwr (never ~/.flwr).
# A SuperLink (simulation mode) is started here on loopback ports and stopped at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
out=$(realpath -m "${1:-$here/results}")
mkdir -p "$out"
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1 FLWR_HOME="$here/.flwr"
export RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=0
# byzagg importable by the ServerApp and ClientApp processes, installed or from this checkout
export PYTHONPATH="$(realpath "$here/../.."):${PYTHONPATH:-}"
STRATEGIES=${STRATEGIES:-"fedavg flower-krum flower-median byzagg-krum byzagg-median byzagg-geometric-median byzagg-trimmed-mean"}
ROUNDS=${ROUNDS:-5}
CLIENTS=${CLIENTS:-12}
BYZANTINE=${BYZANTINE:-3}
ATTACK=${ATTACK:-flip}
PORT=${PORT:-19093}

mkdir -p "$FLWR_HOME"
cat > "$FLWR_HOME/config.toml" <<TOML
[superlink]
default = "byzagg-local"

[superlink.byzagg-local]
address = "127.0.0.1:$PORT"
insecure = true
TOML

# --disable-runtime-dependency-installation: the app runs in this environment, nothing is fetched
flower-superlink --insecure --simulation --disable-runtime-dependency-installation \
  --host 127.0.0.1 --port "$PORT" > "$out/superlink.log" 2>&1 &
superlink=$!
stop_superlink() {
  kill "$superlink" 2>/dev/null || true
  wait "$superlink" 2>/dev/null || true
  # its SuperExec and simulation processes watch --parent-pid and leave by themselves
  for _ in $(seq 60); do
    pgrep -f -- "--parent-pid $superlink\b" > /dev/null || break
    sleep 1
  done
}
trap stop_superlink EXIT
# wait (up to 120 s) until the SuperLink answers on its port
python3 - "$PORT" <<'PY'
import socket, sys, time
deadline = time.time() + 120
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(1)
sys.exit("the SuperLink did not start: see superlink.log")
PY

strategies=$(echo $STRATEGIES | tr ' ' ',')
start=$(date +%s)
flwr run . --stream \
  --federation-config "num-supernodes=$CLIENTS client-resources-num-cpus=1" \
  --run-config "strategy='$strategies' num-clients=$CLIENTS byzantine-clients=$BYZANTINE attack='$ATTACK' f=$BYZANTINE num-server-rounds=$ROUNDS results-file='$out/results.json'" \
  > "$out/run.log" 2>&1
echo "flwr run: $(( $(date +%s) - start )) s for $strategies ($CLIENTS clients, $BYZANTINE $ATTACK, $ROUNDS rounds)"

python3 - "$out/results.json" <<'PY'
import json, sys
from pathlib import Path
runs = json.loads(Path(sys.argv[1]).read_text())["runs"]
print("| strategy | test accuracy after each round (round 0 = initial model) | final | seconds |")
print("|---|---|---|---|")
for run in runs:
    acc = run["accuracy"]
    print(f"| {run['strategy']} | {' '.join(f'{a:.3f}' for a in acc)} | {acc[-1]:.3f} | {run['seconds']:.0f} |")
PY
