#!/usr/bin/env bash
# make demo: seed a demo database, create an API account with a fresh random password,
# serve on 127.0.0.1, walk through login -> get_random -> download once, keep serving.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT=${DEMO_PORT:-8088}
BASE="http://127.0.0.1:${PORT}"
mkdir -p demo
export CDRGATE_DATABASE="sqlite:///${PWD}/demo/cdrgate.db"

if [ ! -f demo/cdrgate.db ]; then
  echo "== seeding 200000 demo CDRs (2026) into demo/cdrgate.db"
  "$BIN/cdrgate" seed --count 200000 --seed 7 --start 2026-01-01 --days 365
fi
echo "== generating demo recordings (tones) for seeded calls of 2026-03-02 into demo/recordings"
"$BIN/python" scripts/demo_recordings.py demo/recordings 2026-03-02 >demo/recordings.txt
REC=$(head -n 1 demo/recordings.txt)
# Names carry callees like "+3351...": a raw "+" in a query means a space, so encode it.
REC_Q=$("$BIN/python" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$REC")
PASSWORD=$("$BIN/cdrgate" api-user set api --generate)
MD5=$(printf '%s' "$PASSWORD" | "$BIN/python" -c 'import hashlib,sys; print(hashlib.md5(sys.stdin.buffer.read()).hexdigest())')

"$BIN/cdrgate" serve --host 127.0.0.1 --port "$PORT" --recordings demo/recordings >demo/serve.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 150); do
  curl -fs "$BASE/" >/dev/null 2>&1 && break
  if ! kill -0 $SERVER 2>/dev/null; then cat demo/serve.log; exit 1; fi
  sleep 0.2
done

cat <<TXT

== cdrgate is serving the Yeastar CDR API on $BASE
   API user: api    password: $PASSWORD    (md5: $MD5)

The whole flow with curl (copy and paste into another terminal):

  TOKEN=\$(curl -s -X POST $BASE/api/v1.1.0/login \\
      -d '{"username":"api","password":"$MD5","port":"8260"}' \\
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

  RANDOM_KEY=\$(curl -s -X POST "$BASE/api/v1.1.0/cdr/get_random?token=\$TOKEN" \\
      -d '{"extid":"1000,1001","starttime":"2026-03-02 00:00:00","endtime":"2026-03-02 23:59:59"}' \\
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["random"])')

  curl -s "$BASE/api/v1.1.0/cdr/download?extid=1000,1001&starttime=2026-03-02%2000:00:00&endtime=2026-03-02%2023:59:59&token=\$TOKEN&random=\$RANDOM_KEY"

A call recording (names come from the CDR's recording column; one random per file):

  REC_KEY=\$(curl -s -X POST "$BASE/api/v1.1.0/recording/get_random?token=\$TOKEN" \\
      -d '{"recording":"$REC"}' \\
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["random"])')

  curl -s -o call.wav "$BASE/api/v1.1.0/recording/download?recording=$REC_Q&token=\$TOKEN&random=\$REC_KEY"

== running it once now:
TXT
TOKEN=$(curl -s -X POST "$BASE/api/v1.1.0/login" \
  -d "{\"username\":\"api\",\"password\":\"$MD5\",\"port\":\"8260\"}" \
  | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
RANDOM_KEY=$(curl -s -X POST "$BASE/api/v1.1.0/cdr/get_random?token=$TOKEN" \
  -d '{"extid":"1000,1001","starttime":"2026-03-02 00:00:00","endtime":"2026-03-02 23:59:59"}' \
  | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["random"])')
curl -s -o demo/download.csv "$BASE/api/v1.1.0/cdr/download?extid=1000,1001&starttime=2026-03-02%2000:00:00&endtime=2026-03-02%2023:59:59&token=$TOKEN&random=$RANDOM_KEY"
head -n 6 demo/download.csv
echo "   ... $(($(wc -l <demo/download.csv) - 1)) CDRs in demo/download.csv"
REC_KEY=$(curl -s -X POST "$BASE/api/v1.1.0/recording/get_random?token=$TOKEN" \
  -d "{\"recording\":\"$REC\"}" \
  | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["random"])')
curl -s -D demo/recording.headers -o demo/recording.wav \
  "$BASE/api/v1.1.0/recording/download?recording=$REC_Q&token=$TOKEN&random=$REC_KEY"
grep -i -E '^(content-type|content-length|content-disposition):' demo/recording.headers
echo "   ... $(wc -c <demo/recording.wav) bytes in demo/recording.wav ($REC)"
echo
echo "== serving until Ctrl-C; the server log (tokens redacted) follows"
tail -n 3 -f demo/serve.log &
TAIL=$!
trap 'kill $SERVER $TAIL 2>/dev/null || true' EXIT INT TERM
wait $SERVER
