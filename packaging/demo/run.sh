#!/usr/bin/env bash
# The embedded default: a whole MyData Federation on this machine, on loopback, with nothing installed.
# What `make demo` runs.
#
# It builds both binaries, makes a fresh state directory .demo/ at the top of the repository, and then does
# what an operator and three agencies would do:
#   1. starts a one-node hub (API 127.0.0.1:8443, raft 127.0.0.1:8300, telemetry 127.0.0.1:9443);
#   2. registers three organisations and one connector each with `mydata-hub admin`;
#   3. makes a single-use join token per connector and enrolls it, pinning the hub's CA fingerprint;
#   4. starts the connectors:
#        moi-dp   Ministry of the Interior (org moi), data provider, QUIC 127.0.0.1:7441, telemetry :9441
#        fia-dp   Fiscal Information Agency (org fia), data provider, QUIC 127.0.0.1:7442, telemetry :9442
#        bank-sp  a sample bank (org demobank), service provider, QUIC 127.0.0.1:7443, telemetry :9444
#   5. pings each data provider from the bank over QUIC with mutual TLS (`mydata-connector status --peer`);
#   6. prints what runs where, and keeps everything running until Ctrl-C, then stops it all.
#
# Environment:
#   DEMO_EXIT_AFTER_START=1  stop everything and exit 0 right after the summary (for tests and CI)
#   DEMO_SKIP_BUILD=1        use the binaries already in bin/ (`make demo` builds them first)
#   DEMO_DIR=PATH            state directory instead of <repo>/.demo (it is deleted and made afresh)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/bin"
demo="${DEMO_DIR:-$root/.demo}"
hub_bin="$bin/mydata-hub"
conn_bin="$bin/mydata-connector"

trust_domain="mydata.example"
hub_api="127.0.0.1:8443"
hub_raft="127.0.0.1:8300"
hub_tel="127.0.0.1:9443"

# One line per connector: name org roles quic-address telemetry-address.
connectors=(
	"moi-dp moi dp 127.0.0.1:7441 127.0.0.1:9441"
	"fia-dp fia dp 127.0.0.1:7442 127.0.0.1:9442"
	"bank-sp demobank sp 127.0.0.1:7443 127.0.0.1:9444"
)

if [[ -t 1 ]]; then
	bold=$'\e[1m' green=$'\e[32m' red=$'\e[31m' reset=$'\e[0m'
else
	bold="" green="" red="" reset=""
fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$reset"; }
# show prints a command as one would type it: paths relative to the repository, arguments with spaces or
# shell characters quoted, and the value of $secret (a join token) shortened.
secret=""
shell_special=$' \t\'"$&;|<>()*?!`\\'
show() {
	local out="" a
	for a in "$@"; do
		a="${a//$root\//}"
		if [[ -n "$secret" && "$a" == "$secret" ]]; then
			a="${secret:0:12}…"
		fi
		if [[ -z "$a" || "$a" == *["$shell_special"]* ]]; then
			a="'${a//\'/\'\\\'\'}'"
		fi
		out+="${out:+ }$a"
	done
	printf '%s' "$out"
}
# run prints a command on stderr, so that its output can be captured, and runs it.
run() {
	printf '  $ %s\n' "$(show "$@")" >&2
	"$@"
}
die() {
	printf '%sdemo: %s%s\n' "$red" "$*" "$reset" >&2
	exit 1
}

# ---- processes ---------------------------------------------------------------------------------------------

pids=()  # every process we started, in start order
names=() # their names, same order

stop_all() {
	local i pid
	# Connectors first, the hub last, each with SIGTERM: they shut down gracefully.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		pid="${pids[i]}"
		kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null || true
	done
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		pid="${pids[i]}"
		# Up to 10 s each, then SIGKILL.
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "  ${names[i]} (pid $pid) did not stop within 10s of SIGTERM; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	pids=()
	names=()
}

on_exit() {
	local rc=$?
	trap - EXIT INT TERM
	if ((${#pids[@]} > 0)); then
		step "Stopping the federation"
		stop_all
		echo "  stopped. State and logs stay in ${demo#$root/}/ until the next run."
	fi
	exit "$rc"
}
on_signal() {
	exit 0 # runs on_exit, which stops everything
}
trap on_exit EXIT
trap on_signal INT TERM

# start NAME LOGFILE COMMAND...: runs COMMAND in the background with its output in LOGFILE.
start() {
	local name="$1" log="$2"
	shift 2
	printf '  $ %s > %s 2>&1 &\n' "$(show "$@")" "${log#$root/}"
	"$@" >"$log" 2>&1 &
	pids+=("$!")
	names+=("$name")
}

# fail_with_log NAME LOGFILE MESSAGE: reports MESSAGE with the end of a log and exits.
fail_with_log() {
	printf '%sdemo: %s%s\n--- last lines of %s ---\n' "$red" "$3" "$reset" "$2" >&2
	tail -n 30 "$2" >&2 || true
	exit 1
}

# http_status HOST:PORT PATH: prints the HTTP status code of a plain-HTTP GET, or 000 when nothing answers.
# Bash's /dev/tcp, so that the demo needs no curl.
http_status() {
	local hostport="$1" path="$2"
	(
		exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || { echo 000 && exit 0; }
		printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3
		IFS= read -r -t 5 line <&3 || { echo 000 && exit 0; }
		line="${line#HTTP/* }"
		echo "${line%% *}"
	) 2>/dev/null
}

# tcp_in_use HOST:PORT: true if something accepts TCP connections there.
tcp_in_use() {
	local host="${1%:*}" port="${1##*:}"
	(exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# wait_ready NAME TELEMETRY LOGFILE PID: waits up to 60 s for /readyz to answer 200.
wait_ready() {
	local name="$1" tel="$2" log="$3" pid="$4" code
	for _ in $(seq 600); do
		kill -0 "$pid" 2>/dev/null || fail_with_log "$name" "$log" "$name exited while starting"
		code="$(http_status "$tel" /readyz)"
		if [[ "$code" == 200 ]]; then
			echo "  $name is ready (http://$tel/readyz)"
			return
		fi
		sleep 0.1
	done
	fail_with_log "$name" "$log" "$name not ready within 60s (last /readyz status $code)"
}

# ---- 0. preflight and build --------------------------------------------------------------------------------

ports=("$hub_api" "$hub_raft" "$hub_tel")
for c in "${connectors[@]}"; do
	read -r _ _ _ _ tel <<<"$c"
	ports+=("$tel")
done
for p in "${ports[@]}"; do
	if tcp_in_use "$p"; then
		die "$p is already in use (another demo still running?). Stop whatever listens there and try again."
	fi
done

if [[ "${DEMO_SKIP_BUILD:-}" != 1 ]]; then
	step "Building the binaries"
	version="$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)"
	(cd "$root" && run env CGO_ENABLED=1 go build -ldflags "-X github.com/mydatafed/mydata/pkg/telemetry.Version=$version" \
		-o "$bin/" ./hub/cmd/mydata-hub ./connector/cmd/mydata-connector)
fi
[[ -x "$hub_bin" && -x "$conn_bin" ]] || die "no binaries in ${bin#$root/}/: run make build"
echo "  $("$hub_bin" version), $("$conn_bin" version)"

step "Making a fresh state directory ${demo#$root/}/"
rm -rf "$demo"
mkdir -p "$demo/logs"
chmod 700 "$demo"

hub_conf="$demo/hub.yaml"
cat >"$hub_conf" <<EOF
# Demo hub: see conf/hub.yaml for every key. Made by packaging/demo/run.sh; overwritten on each run.
trust_domain: $trust_domain
node_id: hub-1
data_dir: $demo/hub
api:
  listen: $hub_api
raft:
  listen: $hub_raft
  bootstrap: true
telemetry:
  listen: $hub_tel
EOF
echo "  ${hub_conf#$root/}"

for c in "${connectors[@]}"; do
	read -r name org _ quic tel <<<"$c"
	cat >"$demo/$name.yaml" <<EOF
# Demo connector $name: see conf/connector.yaml for every key. Made by packaging/demo/run.sh.
trust_domain: $trust_domain
org: $org
name: $name
data_dir: $demo/$name
hub:
  url: https://$hub_api
quic:
  listen: $quic
telemetry:
  listen: $tel
EOF
	echo "  ${demo#$root/}/$name.yaml"
done

# ---- 1. the hub --------------------------------------------------------------------------------------------

step "Starting the hub (one-node raft cluster, embedded CA)"
hub_log="$demo/logs/hub.log"
start hub "$hub_log" "$hub_bin" serve --config "$hub_conf"
hub_pid="${pids[-1]}"
wait_ready hub "$hub_tel" "$hub_log" "$hub_pid"

admin() { run "$hub_bin" admin --config "$hub_conf" "$@"; }

fingerprint="$(run "$hub_bin" ca fingerprint --config "$hub_conf")"
echo "  $fingerprint"

# ---- 2. organisations and connectors -----------------------------------------------------------------------

step "Registering the organisations"
admin org add --code moi --name-zh 內政部 --name-en "Ministry of the Interior" --type central-agency
admin org add --code fia --name-zh 財政部財政資訊中心 --name-en "Fiscal Information Agency" --type central-agency
admin org add --code demobank --name-zh 示範銀行 --name-en "Demo Bank (a sample bank)" --type financial-institution
admin org list

step "Registering their connectors"
for c in "${connectors[@]}"; do
	read -r name org roles quic _ <<<"$c"
	admin connector add --org "$org" --name "$name" --roles "$roles" --address "$quic"
done
admin connector list

# ---- 3. join tokens and enrollment -------------------------------------------------------------------------

step "Enrolling each connector with a single-use join token, pinning the hub CA"
for c in "${connectors[@]}"; do
	read -r name org _ _ _ <<<"$c"
	token="$(admin token create --org "$org" --connector "$name" --ttl 10m)"
	secret="$token"
	echo "  token for $org/$name: $(show "$token") (single use, valid 10 minutes, carries the CA fingerprint)"
	run "$conn_bin" enroll --config "$demo/$name.yaml" --token "$token" --hub-ca "$fingerprint"
	secret=""
done

# ---- 4. the connectors -------------------------------------------------------------------------------------

step "Starting the connectors"
for c in "${connectors[@]}"; do
	read -r name _ _ _ _ <<<"$c"
	start "$name" "$demo/logs/$name.log" "$conn_bin" serve --config "$demo/$name.yaml"
done
i=1
for c in "${connectors[@]}"; do
	read -r name _ _ _ tel <<<"$c"
	wait_ready "$name" "$tel" "$demo/logs/$name.log" "${pids[i]}"
	i=$((i + 1))
done

# ---- 5. QUIC mTLS between connectors -----------------------------------------------------------------------

step "Proving the QUIC mutual-TLS channel: the bank pings each data provider"
for target in moi/moi-dp fia/fia-dp; do
	run "$conn_bin" status --config "$demo/bank-sp.yaml" --peer "$target" | sed 's/^/    /'
done

# ---- 6. summary --------------------------------------------------------------------------------------------

r() { echo "${1#$root/}"; }
cat <<EOF

${bold}${green}The MyData Federation demo is running.${reset}  (trust domain $trust_domain; paths are relative to $root)

${bold}Hub${reset} (node hub-1, pid $hub_pid)
  API (HTTPS, mTLS)     https://$hub_api        e.g. curl -sk https://$hub_api/v1/health
  raft (mTLS)           $hub_raft
  metrics               http://$hub_tel/metrics
  health / ready        http://$hub_tel/healthz   http://$hub_tel/readyz
  CA fingerprint        $fingerprint
  config / data / log   $(r "$hub_conf")   $(r "$demo/hub")/   $(r "$hub_log")

${bold}Connectors${reset}
EOF
i=1
for c in "${connectors[@]}"; do
	read -r name org roles quic tel <<<"$c"
	printf '  %-8s spiffe://%s/org/%s/connector/%s  (%s, pid %s)\n' "$name" "$trust_domain" "$org" "$name" "$roles" "${pids[i]}"
	printf '           QUIC %s (udp)   metrics http://%s/metrics   ready http://%s/readyz\n' "$quic" "$tel" "$tel"
	printf '           config %s   log %s\n' "$(r "$demo/$name.yaml")" "$(r "$demo/logs/$name.log")"
	i=$((i + 1))
done
cat <<EOF

${bold}Try${reset} (from $root)
  bin/mydata-hub admin --config $(r "$hub_conf") connector list
  bin/mydata-hub admin --config $(r "$hub_conf") cert list
  bin/mydata-connector status --config $(r "$demo/bank-sp.yaml") --peer fia/fia-dp
  bin/mydata-hub admin --config $(r "$hub_conf") connector suspend --org fia --name fia-dp
      then the status --peer above is refused; 'connector activate' lets it back in
  bin/mydata-hub admin --config $(r "$hub_conf") connector revoke --org fia --name fia-dp
      revocation is final; every connector gets the new directory by long-poll at once
  tail -f $(r "$demo/logs")/*.log

EOF

if [[ "${DEMO_EXIT_AFTER_START:-}" == 1 ]]; then
	echo "DEMO_EXIT_AFTER_START=1: stopping now."
	exit 0
fi

echo "Press Ctrl-C to stop everything."
# Wait until Ctrl-C, or until one of the processes dies on its own, which is an error.
while true; do
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[i]}" 2>/dev/null; then
			wait "${pids[i]}" && rc=0 || rc=$?
			name="${names[i]}"
			log="$demo/logs/$name.log"
			unset 'pids[i]' 'names[i]'
			pids=("${pids[@]}") names=("${names[@]}")
			fail_with_log "$name" "$log" "$name exited unexpectedly (exit status $rc)"
		fi
	done
	sleep 1 &
	wait $! || true
done
