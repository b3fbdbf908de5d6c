#!/usr/bin/env bash
# bench/run.sh — one load, two MTAs: Postfix's smtp-source → MTA → smtp-sink (LMTP), run once against
# Postern and once against Debian's Postfix configured alike, then both rates, their ratio and
# Postern's peak RSS. `--idle N` instead holds N idle SMTP sessions open and prints the memory used.
# Everything runs on 127.0.0.1 free ports in a temp dir (/tmp/pb.XXXXXX); nothing of the system's
# mail setup is used or changed. See bench/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bench/run.sh [options]
  -n, --messages N   messages to send (default 2000)
  -s, --sessions S   parallel SMTP sessions of smtp-source (default 20)
  -l, --size BYTES   message size, smtp-source -l (default 5120)
  -w, --warmup N     messages sent and delivered before the clock starts (default 100)
      --only WHICH   postern | postfix (default: both)
      --idle N       instead of the load: hold N idle sessions (after EHLO) and print memory
      --no-build     do not run `cargo build --release -p postern` first
      --timeout SEC  give up waiting for deliveries after SEC seconds (default 300)
      --keep         keep the temp dir (configs, logs, sink output) for inspection
EOF
}

N=2000 S=20 L=5120 WARMUP=100 ONLY=both IDLE=0 BUILD=yes TIMEOUT=300 KEEP=no
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--messages) N=$2; shift 2 ;;
    -s|--sessions) S=$2; shift 2 ;;
    -l|--size) L=$2; shift 2 ;;
    -w|--warmup) WARMUP=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --idle) IDLE=$2; shift 2 ;;
    --no-build) BUILD=no; shift ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --keep) KEEP=yes; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$ONLY" in both|postern|postfix) ;; *) echo "--only: postern or postfix" >&2; exit 2 ;; esac

REPO=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$PATH:/usr/sbin:/sbin"
for prog in smtp-source smtp-sink postfix python3 setpriv; do
  command -v "$prog" >/dev/null || {
    echo "bench/run.sh: $prog not found (apt-get install postfix python3 util-linux; scripts/test installs postfix)" >&2
    exit 1
  }
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Daemons that must not run as root (smtp-sink, postern) run as nobody when we are root.
if [ "$(id -u)" = 0 ]; then
  RUN_USER=nobody RUN_GROUP=$(id -gn nobody)
  AS=(setpriv --reuid=nobody --regid="$RUN_GROUP" --clear-groups)
else
  RUN_USER=$(id -un) RUN_GROUP=$(id -gn) AS=()
fi

W=$(mktemp -d /tmp/pb.XXXXXX)
chmod 755 "$W"
PIDS=()        # background processes we started (sinks, postern, idle holders)
PF_RUNNING=""  # config dir of a started Postfix instance
cleanup() {
  local rc=$?
  [ -z "$PF_RUNNING" ] || postfix -c "$PF_RUNNING" stop >/dev/null 2>&1 || true
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$KEEP" = yes ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }
die() { log "bench/run.sh: $*"; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # port timeout_s [pid_to_watch name [log_to_show]]
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then
      [ -z "${5:-}" ] || tail -n 20 "$5" >&2
      die "$4 exited before listening on 127.0.0.1:$1${5:+ (log: $5)}"
    fi
    sleep 0.05
  done
  [ -z "${5:-}" ] || tail -n 20 "$5" >&2
  die "$4 is not listening on 127.0.0.1:$1 after $2 s"
}

# smtp-sink in LMTP mode with running counters (`-c`: "sess=… quit=… mesg=…\r" on stdout).
start_sink() { # name port
  local uflag=()
  [ "$(id -u)" != 0 ] || uflag=(-u "$RUN_USER")
  smtp-sink -c -L "${uflag[@]}" -h sink.bench "127.0.0.1:$2" 1024 >"$W/$1.sink" 2>&1 &
  PIDS+=($!)
  wait_port "$2" 10 $! "smtp-sink"
}

sink_count() { # sink output file → messages received so far
  local c
  c=$(tail -c 300 "$1" | tr '\r' '\n' | grep -ao 'mesg=[0-9]*' | tail -n 1 | cut -d= -f2 || true)
  echo "${c:-0}"
}

now() { echo "$EPOCHREALTIME"; }

# Send `count` messages with smtp-source to `port` and wait until the sink has `count` more.
# Prints "elapsed_s accept_s" (wall time until the sink has them all; until smtp-source returned).
load() { # name port sinkfile count sessions
  local name=$1 port=$2 sink=$3 count=$4 sessions=$5 base target t0 t1 tsrc rc c done=$W/$1.source.done
  base=$(sink_count "$sink")
  target=$((base + count))
  rm -f "$done"
  t0=$(now)
  (
    rc=0
    smtp-source -s "$sessions" -m "$count" -l "$L" -M client.bench -f sender@client.bench \
      -t rcpt@bench.example "127.0.0.1:$port" >>"$W/$name.source.log" 2>&1 || rc=$?
    echo "$EPOCHREALTIME $rc" >"$done"
  ) &
  local src=$!
  while :; do
    c=$(sink_count "$sink")
    [ "$c" -lt "$target" ] || break
    if [ -s "$done" ]; then
      read -r tsrc rc <"$done"
      [ "$rc" = 0 ] || die "$name: smtp-source failed (exit $rc): $(tail -n 5 "$W/$name.source.log")"
    fi
    awk -v a="$(now)" -v b="$t0" -v t="$TIMEOUT" 'BEGIN { exit !(a - b > t) }' &&
      die "$name: only $((c - base)) of $count messages reached the sink after ${TIMEOUT}s"
    sleep 0.01
  done
  t1=$(now)
  wait "$src" || true
  read -r tsrc rc <"$done"
  [ "$rc" = 0 ] || die "$name: smtp-source failed (exit $rc): $(tail -n 5 "$W/$name.source.log")"
  awk -v a="$t0" -v b="$t1" -v s="$tsrc" 'BEGIN { printf "%.3f %.3f\n", b - a, s - a }'
}

# The virtual domain and mailbox both MTAs accept (texthash: needs no postmap).
write_maps() { # dir
  printf 'bench.example OK\n' >"$1/vdomains"
  printf 'rcpt@bench.example bench.example/rcpt/\n' >"$1/vmailbox"
}

# main.cf shared by both: $1 config dir, $2 queue dir, $3 sink port; the caller appends the rest.
write_main_cf() {
  cat >"$1/main.cf" <<EOF
# generated by bench/run.sh
compatibility_level = 3.6
queue_directory = $2
myhostname = mta.bench
mydomain = bench
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = texthash:$1/vdomains
virtual_mailbox_maps = texthash:$1/vmailbox
virtual_transport = lmtp:inet:127.0.0.1:$3
EOF
}

# master.cf with the SMTP listener on `addr:port` and Postfix's usual services, none chrooted.
write_master_cf() { # dir listen smtpd_maxproc
  cat >"$1/master.cf" <<EOF
# generated by bench/run.sh
$2 inet  n       -       n       -       $3      smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
EOF
}

kib() { awk -v k="$1" 'BEGIN { printf (k >= 10240 ? "%.0f MiB" : "%.1f MiB"), k / 1024 }'; }

# Sum of a /proc/PID/status field (kB) or of Pss (smaps_rollup) over pids.
mem_sum() { # field pid...
  local field=$1 sum=0 v pid
  shift
  for pid in "$@"; do
    if [ "$field" = Pss ]; then
      v=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
    else
      v=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    fi
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# ---------------------------------------------------------------- Postfix (Debian's, own instance)
PF_DIR=$W/postfix
postfix_start() { # sink_port smtpd_maxproc → sets PF_PORT
  PF_PORT=$(free_port)
  mkdir -p "$PF_DIR/etc" "$PF_DIR/queue"
  write_maps "$PF_DIR/etc"
  write_main_cf "$PF_DIR/etc" "$PF_DIR/queue" "$1"
  cat >>"$PF_DIR/etc/main.cf" <<EOF
data_directory = $PF_DIR/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $PF_DIR/maillog
maillog_file_prefixes = /var, /dev/stdout, /tmp
EOF
  [ "$2" = - ] || echo "default_process_limit = $(( $2 > 100 ? $2 + 20 : 100 ))" >>"$PF_DIR/etc/main.cf"
  write_master_cf "$PF_DIR/etc" "127.0.0.1:$PF_PORT" "$2"
  echo "postlog   unix-dgram n  -       n       -       1       postlogd" >>"$PF_DIR/etc/master.cf"
  # `check` also creates the queue and data directories with Postfix's ownership and modes.
  postfix -c "$PF_DIR/etc" check || die "postfix check failed (see $PF_DIR/maillog)"
  postfix -c "$PF_DIR/etc" start >/dev/null || die "postfix start failed: $(tail -n 5 "$PF_DIR/maillog" 2>/dev/null)"
  PF_RUNNING=$PF_DIR/etc
  wait_port "$PF_PORT" 20 "" "postfix" "$PF_DIR/maillog"
}
postfix_pids() { # master and its children
  local master
  master=$(awk '{ print $1 }' "$PF_DIR/queue/pid/master.pid" 2>/dev/null || true)
  [ -n "$master" ] || return 0
  echo "$master"
  ps -o pid= --ppid "$master" | tr -d " " || true
}
postfix_stop() {
  [ -z "$PF_RUNNING" ] || postfix -c "$PF_RUNNING" stop >/dev/null 2>&1 || true
  PF_RUNNING=""
}

# ---------------------------------------------------------------- Postern
PT_DIR=$W/postern
PT_BIN=${POSTERN_BIN:-$REPO/target/release/postern}
postern_start() { # sink_port smtpd_maxproc → sets PT_PORT, PT_PID
  PT_PORT=$(free_port)
  mkdir -p "$PT_DIR/etc" "$PT_DIR/queue"
  write_maps "$PT_DIR/etc"
  write_main_cf "$PT_DIR/etc" "$PT_DIR/queue" "$1"
  [ "$2" = - ] || echo "default_process_limit = $(( $2 > 100 ? $2 + 20 : 100 ))" >>"$PT_DIR/etc/main.cf"
  write_master_cf "$PT_DIR/etc" "127.0.0.1:$PT_PORT" "$2"
  [ "$(id -u)" != 0 ] || chown -R "$RUN_USER:$RUN_GROUP" "$PT_DIR"
  "${AS[@]}" "$PT_BIN" serve -c "$PT_DIR/etc" 2>"$PT_DIR/stderr" &
  PT_PID=$!
  PIDS+=("$PT_PID")
  wait_port "$PT_PORT" 30 "$PT_PID" "postern serve" "$PT_DIR/stderr"
}
postern_stop() {
  local i
  kill -TERM "$PT_PID" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do kill -0 "$PT_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PT_PID" 2>/dev/null || true
  wait "$PT_PID" 2>/dev/null || true
}

build_postern() {
  [ "$BUILD" = yes ] || { [ -x "$PT_BIN" ] || die "$PT_BIN missing (drop --no-build)"; return 0; }
  log "building postern (cargo build --release -p postern) ..."
  (cd "$REPO" && cargo build --release -p postern) || die "cargo build --release -p postern failed"
}

# ---------------------------------------------------------------- idle sessions
# Opens N sessions (banner + EHLO), prints "ready", holds them until stdin closes.
IDLE_PY='
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def expect(s, code):
    buf = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection closed while waiting for %s" % code)
        buf += chunk
        for line in buf.split(b"\r\n"):
            if line.startswith(code + b" "):
                return
            if line[:1] in (b"4", b"5"):
                sys.exit("refused: %r" % line)
held = []
for i in range(n):
    s = socket.create_connection((host, port), timeout=30)
    expect(s, b"220")
    s.sendall(b"EHLO idle.bench\r\n")
    expect(s, b"250")
    held.append(s)
print("ready", len(held), flush=True)
sys.stdin.read()
'

idle() { # name port → prints "rss_kib" after holding $IDLE sessions; caller measures
  local name=$1 port=$2 i
  mkfifo "$W/$name.idle.in"
  python3 -c "$IDLE_PY" 127.0.0.1 "$port" "$IDLE" <"$W/$name.idle.in" >"$W/$name.idle.out" 2>&1 &
  IDLE_PID=$!
  PIDS+=("$IDLE_PID")
  exec 7>"$W/$name.idle.in"   # keeps the holder's stdin open
  for ((i = 0; i < TIMEOUT * 10; i++)); do
    grep -q '^ready' "$W/$name.idle.out" && return 0
    kill -0 "$IDLE_PID" 2>/dev/null || die "$name: idle client failed: $(cat "$W/$name.idle.out")"
    sleep 0.1
  done
  die "$name: $IDLE sessions not open after ${TIMEOUT}s"
}
idle_release() { exec 7>&-; wait "$IDLE_PID" 2>/dev/null || true; }

# ---------------------------------------------------------------- main
if [ "$ONLY" != postfix ]; then build_postern; fi

log "work dir $W; $(nproc) CPUs"
declare -A RATE ELAPSED ACCEPT

if [ "$IDLE" -gt 0 ]; then
  printf 'idle sessions: %d (each after banner + EHLO)\n' "$IDLE"
  if [ "$ONLY" != postfix ]; then
    SINK=$(free_port); start_sink postern "$SINK"
    postern_start "$SINK" "$IDLE"
    before=$(mem_sum VmRSS "$PT_PID")
    idle postern "$PT_PORT"
    sleep 1
    after=$(mem_sum VmRSS "$PT_PID")
    printf 'postern  RSS %s before, %s with %d idle sessions (%.1f KiB/session), peak %s\n' \
      "$(kib "$before")" "$(kib "$after")" "$IDLE" "$(awk -v a="$after" -v b="$before" -v n="$IDLE" 'BEGIN { print (a - b) / n }')" \
      "$(kib "$(mem_sum VmHWM "$PT_PID")")"
    idle_release
    postern_stop
  fi
  if [ "$ONLY" != postern ]; then
    SINK=$(free_port); start_sink postfix "$SINK"
    postfix_start "$SINK" "$IDLE"
    mapfile -t pids < <(postfix_pids)
    before=$(mem_sum Pss "${pids[@]}")
    idle postfix "$PF_PORT"
    sleep 1
    mapfile -t pids < <(postfix_pids)
    after=$(mem_sum Pss "${pids[@]}")
    printf 'postfix  PSS %s before, %s with %d idle sessions (%.1f KiB/session) over %d processes\n' \
      "$(kib "$before")" "$(kib "$after")" "$IDLE" "$(awk -v a="$after" -v b="$before" -v n="$IDLE" 'BEGIN { print (a - b) / n }')" "${#pids[@]}"
    idle_release
    postfix_stop
  fi
  exit 0
fi

printf 'load: %d messages of %d bytes, %d sessions (smtp-source -m %d -s %d -l %d), warm-up %d, LMTP smtp-sink\n' \
  "$N" "$L" "$S" "$N" "$S" "$L" "$WARMUP"

if [ "$ONLY" != postern ]; then
  SINK=$(free_port); start_sink postfix "$SINK"
  postfix_start "$SINK" -
  [ "$WARMUP" -eq 0 ] || load postfix "$PF_PORT" "$W/postfix.sink" "$WARMUP" "$S" >/dev/null
  load postfix "$PF_PORT" "$W/postfix.sink" "$N" "$S" >"$W/postfix.result"
  read -r "ELAPSED[postfix]" "ACCEPT[postfix]" <"$W/postfix.result"
  mapfile -t pids < <(postfix_pids)
  PF_PSS=$(mem_sum Pss "${pids[@]}")
  PF_NPROC=${#pids[@]}
  postfix_stop
  RATE[postfix]=$(awk -v n="$N" -v t="${ELAPSED[postfix]}" 'BEGIN { printf "%.0f", n / t }')
  printf 'postfix  %8s msg/s  (%ss end to end; smtp-source done after %ss)  PSS %s over %d processes at end\n' \
    "${RATE[postfix]}" "${ELAPSED[postfix]}" "${ACCEPT[postfix]}" "$(kib "$PF_PSS")" "$PF_NPROC"
fi

if [ "$ONLY" != postfix ]; then
  SINK=$(free_port); start_sink postern "$SINK"
  postern_start "$SINK" -
  [ "$WARMUP" -eq 0 ] || load postern "$PT_PORT" "$W/postern.sink" "$WARMUP" "$S" >/dev/null
  load postern "$PT_PORT" "$W/postern.sink" "$N" "$S" >"$W/postern.result"
  read -r "ELAPSED[postern]" "ACCEPT[postern]" <"$W/postern.result"
  PT_HWM=$(mem_sum VmHWM "$PT_PID")
  postern_stop
  RATE[postern]=$(awk -v n="$N" -v t="${ELAPSED[postern]}" 'BEGIN { printf "%.0f", n / t }')
  printf 'postern  %8s msg/s  (%ss end to end; smtp-source done after %ss)  peak RSS (VmHWM) %s\n' \
    "${RATE[postern]}" "${ELAPSED[postern]}" "${ACCEPT[postern]}" "$(kib "$PT_HWM")"
fi

if [ "$ONLY" = both ]; then
  awk -v a="${RATE[postern]}" -v b="${RATE[postfix]}" 'BEGIN { printf "ratio postern/postfix = %.2f\n", a / b }'
fi
