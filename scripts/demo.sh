#!/usr/bin/env bash
# The edgepool tools, end to end, as an iExec user would chain them: encrypt a dataset, check it,
# decrypt it, compute a result digest and the contribution hashes, encrypt the result for a
# beneficiary and decrypt it again. Every value is computed by `edgepool-agent`; the keys of the
# beneficiary come from the iExec SDK vectors in protocol/tests/data/iexec.
#
# Usage: scripts/demo.sh            (builds edgepool-agent in debug mode first)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p edgepool-agent
agent="${CARGO_TARGET_DIR:-target}/debug/edgepool-agent"
vectors=protocol/tests/data/iexec
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "1. Encrypt a CSV dataset (IV ‖ AES-256-CBC, key generated as the iExec SDK does)"
printf 'city,temp_c\nParis,11.5\nLyon,12.0\nNice,15.25\n' > "$work/weather.csv"
answer=$("$agent" dataset encrypt "$work/weather.csv" "$work/weather.csv.enc")
echo "$answer"
key=$(printf '%s' "$answer" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
checksum=$(printf '%s' "$answer" | sed -n 's/.*"checksum":"\([^"]*\)".*/\1/p')
printf '%s\n' "$key" > "$work/weather.key"

step "2. The on-chain checksum of the encrypted file"
"$agent" dataset checksum "$work/weather.csv.enc"
[ "$("$agent" dataset checksum "$work/weather.csv.enc")" = "$checksum" ]

step "3. Decrypt it back (streaming; the output appears only if the whole file decrypts)"
"$agent" dataset decrypt --key-file "$work/weather.key" "$work/weather.csv.enc" "$work/weather.out.csv"
cmp "$work/weather.csv" "$work/weather.out.csv" && echo "plaintext restored byte for byte"

step "4. A wrong key is refused with a typed error and exit code 1"
printf 'VRvjSaP1pRM/KrWYJaiouV3QZfUAZU4dI3YjY+fHESc=\n' > "$work/wrong.key"
if "$agent" dataset decrypt --key-file "$work/wrong.key" "$work/weather.csv.enc" "$work/nope.csv"; then
  echo "a wrong key was accepted" >&2; exit 1
else
  echo "exit code $? and no output file: $([ -e "$work/nope.csv" ] && echo present || echo absent)"
fi

step "4b. With the on-chain checksum, a wrong key and a corrupt file are told apart"
"$agent" dataset decrypt --key-file "$work/wrong.key" --checksum "$checksum" "$work/weather.csv.enc" "$work/nope.csv" || true
cp "$work/weather.csv.enc" "$work/corrupt.enc"
printf 'X' | dd of="$work/corrupt.enc" bs=1 seek=20 conv=notrunc status=none
"$agent" dataset decrypt --key-file "$work/weather.key" --checksum "$checksum" "$work/corrupt.enc" "$work/nope.csv" || true
[ ! -e "$work/nope.csv" ]

step "5. An app's output folder and its iExec result digest (follows computed.json)"
mkdir -p "$work/iexec_out"
printf 'mean_temp_c=12.92\n' > "$work/iexec_out/result.txt"
printf '{"deterministic-output-path":"/iexec_out/result.txt"}' > "$work/iexec_out/computed.json"
digest=$("$agent" result digest --iexec-out "$work/iexec_out")
echo "result digest: $digest"

step "6. Task id and contribution hashes (PoCo)"
deal=0x58d26b541819f73799466901f1b44a3a299a34717f02c5540e75a58176872f9c
task=$("$agent" poco task-id "$deal" 1)
echo "task id: $task"
"$agent" poco hashes --task-id "$task" --digest "$digest" --worker 0x9d21148faceaA84a6417252A0025eFFFaF554DF6

step "7. Tags"
"$agent" tag encode tee,gpu
"$agent" tag decode 0x0000000000000000000000000000000000000000000000000000000000000103

step "8. Encrypt the result for the beneficiary (key as stored in the SMS) and decrypt it"
"$agent" result encrypt --public-key "$vectors/result_encryption/beneficiary_key.pub.pem.b64" \
  "$work/iexec_out" "$work/encrypted-iexec_out.zip"
"$agent" result decrypt --private-key "$vectors/result_encryption/beneficiary_key.pem" \
  "$work/encrypted-iexec_out.zip" "$work/iexec_out.zip"
ls -l "$work/encrypted-iexec_out.zip" "$work/iexec_out.zip" | awk '{print $5, $NF}'
python3 - "$work/iexec_out.zip" <<'PY' 2>/dev/null || true
import sys, zipfile
for info in zipfile.ZipFile(sys.argv[1]).infolist():
    print(f"  {info.filename}  {info.file_size} bytes")
PY

step "9. The agent daemon: init, run against a local Mosquitto, watch what it publishes"
if [ ! -x /usr/sbin/mosquitto ] || ! command -v mosquitto_sub >/dev/null 2>&1; then
  echo "skipped: needs mosquitto and mosquitto-clients (apt-get install -y mosquitto mosquitto-clients)"
else
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n' "$port" > "$work/mosquitto.conf"
  /usr/sbin/mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
  broker_pid=$!
  trap 'kill "$broker_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  printf 'demo keystore password\n' > "$work/keystore-password"
  "$agent" init --json --config "$work/agent.toml" --state-dir "$work/state" \
    --broker "mqtt://127.0.0.1:$port" \
    --pool 0x1111111111111111111111111111111111111111 \
    --scheduler 0x2222222222222222222222222222222222222222 \
    --password-file "$work/keystore-password"
  EDGEPOOL_IDENTITY_PASSWORD_FILE="$work/keystore-password" EDGEPOOL_AGENT_HEARTBEAT_SECS=1 \
    EDGEPOOL_AGENT_MIN_FREE_DISK_MB=1 "$agent" run --config "$work/agent.toml" 2>"$work/agent.log" &
  agent_pid=$!
  echo "-- what a scheduler sees (presence, signed capacity, heartbeats; binary payloads shown as sizes):"
  mosquitto_sub -h 127.0.0.1 -p "$port" -t 'edgepool/v1/#' -C 4 -W 15 -F '%t  %l bytes, retained=%r'
  mosquitto_sub -h 127.0.0.1 -p "$port" -t 'edgepool/v1/+/workers/+/presence' -C 1 -W 5 -F 'presence payload: %p'
  kill -TERM "$agent_pid"; wait "$agent_pid"
  echo "-- the agent's log:"; cut -c1-160 "$work/agent.log"
  EDGEPOOL_IDENTITY_PASSWORD_FILE="$work/keystore-password" EDGEPOOL_AGENT_MIN_FREE_DISK_MB=1 \
    "$agent" doctor --config "$work/agent.toml" || true
  "$agent" status --config "$work/agent.toml"
fi

printf '\nAll steps passed.\n'
