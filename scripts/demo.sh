#!/usr/bin/env bash
# make demo: seed a demo database, create the API account (its password is kept in
# demo/api-password and reused; ROTATE=1 makes a new one), serve on 127.0.0.1, walk through
# login -> get_random -> download once, keep serving.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/.venv/bin"
# DEMO_ROOT: where demo/ lives (the checkout; tests use a scratch directory).
cd "${DEMO_ROOT:-$ROOT}"
PORT=${DEMO_PORT:-8088}
BASE="http://127.0.0.1:${PORT}"
PASSWORD_FILE=demo/api-password
PID_FILE=demo/serve.pid

# Check before touching anything: a second demo must not reset the first one's password, and
# a probe must not mistake another program on the port for our server.
if [ -f "$PID_FILE" ] && ps -p "$(cat "$PID_FILE")" -o args= 2>/dev/null | grep -q cdrgate; then
  echo "a demo is already running (pid $(cat "$PID_FILE")): stop it with Ctrl-C first" >&2
  exit 1
fi
if ! "$BIN/python" - "$PORT" <<'PY'
import socket, sys
with socket.socket() as sock:
    # As the server will: SO_REUSEADDR, so only a listener (not TIME_WAIT) counts as in use.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        sys.exit(1)
PY
then
  echo "port $PORT is in use: set DEMO_PORT (make demo DEMO_PORT=9000)" >&2
  exit 1
fi

mkdir -p demo
export CDRGATE_DATABASE="sqlite:///${PWD}/demo/cdrgate.db"

if [ ! -f demo/cdrgate.db ]; then
  echo "== seeding 200000 demo CDRs (2026) into demo/cdrgate.db"
  "$BIN/cdrgate" seed --count 200000 --seed 7 --start 2026-01-01 --days 365
fi
echo "== generating demo recordings (tones) for every seeded call of 2026-03-02 into demo/recordings"
"$BIN/python" "$ROOT/scripts/demo_recordings.py" demo/recordings 2026-03-02 >demo/recordings.txt
REC=$(head -n 1 demo/recordings.txt)
# Names carry callees like "+3351...": a raw "+" in a query means a space, so encode it.
REC_Q=$("$BIN/python" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$REC")
if [ "${ROTATE:-0}" != 0 ] || [ ! -s "$PASSWORD_FILE" ]; then
  PASSWORD=$("$BIN/cdrgate" api-user set api --generate)
  (umask 077 && printf '%s\n' "$PASSWORD" >"$PASSWORD_FILE.new")
  mv "$PASSWORD_FILE.new" "$PASSWORD_FILE"
else
  PASSWORD=$(cat "$PASSWORD_FILE")
  # The same password again: the database may have been deleted since the last run.
  printf '%s\n' "$PASSWORD" | "$BIN/cdrgate" api-user set api --password-stdin
fi
MD5=$(printf '%s' "$PASSWORD" | "$BIN/python" -c 'import hashlib,sys; print(hashlib.md5(sys.stdin.buffer.read()).hexdigest())')

# Appended, never truncated: a file cut under a process still writing to it fills with NULs.
echo "== demo started $(date '+%Y-%m-%d %H:%M:%S')" >>demo/serve.log
"$BIN/cdrgate" serve --host 127.0.0.1 --port "$PORT" --recordings demo/recordings >>demo/serve.log 2>&1 &
SERVER=$!
TAIL=""
echo "$SERVER" >"$PID_FILE"
# On exit, wait for the server to be gone: a demo started right after must find the port free.
stop() {
  trap - EXIT INT TERM
  kill $SERVER $TAIL 2>/dev/null || true
  wait $SERVER 2>/dev/null || true
  rm -f "$PID_FILE"
}
trap stop EXIT INT TERM
for _ in $(seq 1 150); do
  curl -fs "$BASE/" >/dev/null 2>&1 && break
  if ! kill -0 $SERVER 2>/dev/null; then tail -n 20 demo/serve.log; exit 1; fi
  sleep 0.2
done

cat <<TXT

== cdrgate is serving the Yeastar CDR API on $BASE
   API user: api    password: $PASSWORD    (md5: $MD5)
   The password is kept in $PASSWORD_FILE and stays the same on every run;
   make demo ROTATE=1 makes a new one.

The CLI and the SDK against this demo (the README's and docs' examples run as pasted
after these exports; use another terminal):

  cd $PWD
  export PATH="$BIN:\$PATH" CDRGATE_DATABASE="$CDRGATE_DATABASE"
  export CDRGATE_PBX_PASSWORD="\$(cat $PWD/$PASSWORD_FILE)"
  cdrgate stats                                  # what the demo database holds
  cdrgate download --pbx $BASE --username api --extid 1000 \\
      --start "2026-03-02 00:00:00" --end "2026-03-02 23:59:59" --output -
  python                                         # then paste the SDK example of docs/client.md

The whole flow with curl (copy and paste into another terminal):

  TOKEN=\$(curl -s -X POST $BASE/api/v1.1.0/login \\
      -d '{"username":"api","password":"$MD5","port":"8260"}' \\
      | python3 -c 'import json,sys; s=sys.stdin.read(); a=json.loads(s) if s.startswith("{") else sys.exit("no JSON answer: is BASE right?"); print(a["token"]) if "token" in a else sys.exit("failed: errno %s" % a.get("errno"))')

  RANDOM_KEY=\$(curl -s -X POST "$BASE/api/v1.1.0/cdr/get_random?token=\$TOKEN" \\
      -d '{"extid":"1000,1001","starttime":"2026-03-02 00:00:00","endtime":"2026-03-02 23:59:59"}' \\
      | python3 -c 'import json,sys; s=sys.stdin.read(); a=json.loads(s) if s.startswith("{") else sys.exit("no JSON answer: is BASE right?"); print(a["random"]) if "random" in a else sys.exit("failed: errno %s" % a.get("errno"))')

  curl -s "$BASE/api/v1.1.0/cdr/download?extid=1000,1001&starttime=2026-03-02%2000:00:00&endtime=2026-03-02%2023:59:59&token=\$TOKEN&random=\$RANDOM_KEY"

A call recording (names come from the CDR's recording column; one random per file):

  REC_KEY=\$(curl -s -X POST "$BASE/api/v1.1.0/recording/get_random?token=\$TOKEN" \\
      -d '{"recording":"$REC"}' \\
      | python3 -c 'import json,sys; s=sys.stdin.read(); a=json.loads(s) if s.startswith("{") else sys.exit("no JSON answer: is BASE right?"); print(a["random"]) if "random" in a else sys.exit("failed: errno %s" % a.get("errno"))')

  curl -s -o call.wav "$BASE/api/v1.1.0/recording/download?recording=$REC_Q&token=\$TOKEN&random=\$REC_KEY"

== running it once now:
TXT
# field NAME: NAME from the JSON answer on stdin, or the errno and a failing exit.
field() {
  "$BIN/python" -c 'import json, sys
answer = json.load(sys.stdin)
if sys.argv[1] not in answer:
    sys.exit("demo: the server answered errno %s" % answer.get("errno"))
print(answer[sys.argv[1]])' "$1"
}
TOKEN=$(curl -s -X POST "$BASE/api/v1.1.0/login" \
  -d "{\"username\":\"api\",\"password\":\"$MD5\",\"port\":\"8260\"}" \
  | field token)
RANDOM_KEY=$(curl -s -X POST "$BASE/api/v1.1.0/cdr/get_random?token=$TOKEN" \
  -d '{"extid":"1000,1001","starttime":"2026-03-02 00:00:00","endtime":"2026-03-02 23:59:59"}' \
  | field random)
curl -s -o demo/download.csv "$BASE/api/v1.1.0/cdr/download?extid=1000,1001&starttime=2026-03-02%2000:00:00&endtime=2026-03-02%2023:59:59&token=$TOKEN&random=$RANDOM_KEY"
head -n 6 demo/download.csv
echo "   ... $(($(wc -l <demo/download.csv) - 1)) CDRs in demo/download.csv"
REC_KEY=$(curl -s -X POST "$BASE/api/v1.1.0/recording/get_random?token=$TOKEN" \
  -d "{\"recording\":\"$REC\"}" \
  | field random)
curl -s -D demo/recording.headers -o demo/recording.wav \
  "$BASE/api/v1.1.0/recording/download?recording=$REC_Q&token=$TOKEN&random=$REC_KEY"
grep -i -E '^(content-type|content-length|content-disposition):' demo/recording.headers
echo "   ... $(wc -c <demo/recording.wav) bytes in demo/recording.wav ($REC)"
echo
echo "== serving until Ctrl-C; the server log (tokens redacted) follows"
tail -n 3 -f demo/serve.log &
TAIL=$!
wait $SERVER
