#!/usr/bin/env bash
# The embedded default: a whole MyData Federation on this machine, on loopback, with nothing installed.
# What `make demo` runs.
#
# It builds both binaries and the demo's three sample programs (packaging/demo/samplebank, the sample bank's
# web application; packaging/demo/data/mkdb, which builds an agency's SQLite database; packaging/demo/identity,
# what the login methods talk to outside the hub), makes a fresh
# state directory .demo/ at the top of the repository, copies the synthetic sample data there
# (packaging/demo/data: five fictional citizens), and then does what an operator, two agencies and a bank
# would do:
#   0. makes a test CA with a natural-person card (自然人憑證) per sample citizen and one revoked card
#      (`identity ca`, in .demo/identity/ca);
#   1. starts a one-node hub (API 127.0.0.1:8443, raft 127.0.0.1:8300, telemetry 127.0.0.1:9443) with its
#      citizen portal on http://localhost:8080 (listening on 127.0.0.1:8080; "localhost" because passkeys need
#      a secure context and a domain name) and these login methods: natural-person certificate (level 3,
#      the test CA's root and CRL), two documents (level 2, the sample registry), passkeys (level 2),
#      one-time codes by e-mail (level 1), and the development login (type a national ID, pick a method);
#      with DEMO_HUB_NODES=3 or 5, then joins hub-2..hub-N to it with a node join token each and waits until
#      all are voters (their ports: see "the hub's nodes" below);
#   2. registers three organisations and their connectors with `mydata-hub admin` (two for moi);
#   3. makes a single-use join token per connector and enrolls it, pinning the hub's CA fingerprint;
#   4. starts the connectors:
#        moi-dp   Ministry of the Interior (org moi), data provider, QUIC 127.0.0.1:7441, telemetry :9441;
#                 moi.household from files (.demo/agency/moi/household/<ID>.json)
#        moi-dp2  the Ministry's second connector for the same dataset (connector HA), QUIC 127.0.0.1:7444,
#                 telemetry :9445: either one serves a ticket, once; kill one and the other serves
#        fia-dp   Fiscal Information Agency (org fia), data provider, QUIC 127.0.0.1:7442, telemetry :9442;
#                 fia.income from files, fia.property from a SQLite database (the sql backend)
#        bank-sp  a sample bank (org demobank), service provider, QUIC 127.0.0.1:7443, telemetry :9444;
#                 its local API for the bank's web application on 127.0.0.1:8442
#   5. pings each data provider from the bank over QUIC with mutual TLS (`mydata-connector status --peer`);
#   6. registers the three datasets (identity assurance level 2 or higher) and the bank's online service
#      demobank.card, which asks for all three and returns to http://127.0.0.1:8000/callback;
#   7. makes the income agency slow for one citizen (F132604985: "not ready, retry in 20 s" at first);
#   8. starts what the login methods talk to (packaging/demo/identity): the mail server where one-time codes
#      arrive (SMTP 127.0.0.1:2525, its page http://127.0.0.1:8025), the sample household/NHI registry of
#      the two-documents login (http://127.0.0.1:8090) and the card-signing component with A123456789's
#      card "in the reader" (http://127.0.0.1:61161);
#   9. starts the sample bank's web application on http://127.0.0.1:8000;
#  10. prints what runs where and how to log in with each method, and keeps everything running until
#      Ctrl-C, then stops it all.
#
# Environment:
#   DEMO_EXIT_AFTER_START=1  stop everything and exit 0 right after the summary (for tests and CI); the
#                            summary comes after a check that every portal's /login page lists the
#                            certificate, two-documents, one-time-code and passkey methods
#   DEMO_SKIP_BUILD=1        use the binaries already in bin/ (`make demo` builds them first); the sample
#                            programs are built in any case, into bin/demo/
#   DEMO_DIR=PATH            state directory instead of <repo>/.demo (it is deleted and made afresh)
#   DEMO_HUB_NODES=N         hub nodes: 1 (the default), or 3 or 5 for a raft cluster (`make demo-cluster`: 3);
#                            every connector then lists every node's API in hub.url
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/bin"
demo="${DEMO_DIR:-$root/.demo}"
hub_bin="$bin/mydata-hub"
conn_bin="$bin/mydata-connector"
demo_bin="$bin/demo"
data_src="$root/packaging/demo/data"
agency="$demo/agency"

trust_domain="mydata.example"
hub_api="127.0.0.1:8443"
hub_raft="127.0.0.1:8300"
hub_tel="127.0.0.1:9443"
hub_portal="127.0.0.1:8080"
# The portal's public URL: localhost, not 127.0.0.1, because WebAuthn (passkeys) needs a secure context and a
# domain name as its relying party id; http://localhost is both. Browsers, the bank and the signer all use it,
# so that the portal's cookies and passkeys line up.
portal_host="localhost"
hub_nodes="${DEMO_HUB_NODES:-1}"
bank_app="127.0.0.1:8000"
bank_api="127.0.0.1:8442"
client_id="demobank.card"

# What the login methods talk to outside the hub (packaging/demo/identity).
mail_smtp="127.0.0.1:2525"
mail_web="127.0.0.1:8025"
registry_addr="127.0.0.1:8090"
signer_addr="127.0.0.1:61161"
# The bank's counter page for its tellers (counter verification), on the bank's SP connector.
counter_addr="127.0.0.1:8010"
counter_id="demobank.counter"
counter_staff="teller"
counter_password="demo-counter-2026"
# The sample citizens, who get a natural-person card each; the first one's card is in the reader at first,
# and the first one also has a revoked card (reported lost). card_citizen's two documents are shown.
citizens=(A123456789 B220713459 F132604985 E225810349 H120945179)
card_citizen="${citizens[0]}"
docs_citizen="B220713459"

# One line per connector: name org roles quic-address telemetry-address local-api-address. Every connector
# opens its local API (exchange.listen), a data provider's too, so each needs a port of its own.
connectors=(
	"moi-dp moi dp 127.0.0.1:7441 127.0.0.1:9441 127.0.0.1:8440"
	"moi-dp2 moi dp 127.0.0.1:7444 127.0.0.1:9445 127.0.0.1:8439"
	"fia-dp fia dp 127.0.0.1:7442 127.0.0.1:9442 127.0.0.1:8441"
	"bank-sp demobank sp 127.0.0.1:7443 127.0.0.1:9444 $bank_api"
)

# The slow agency of step 7: this citizen's income is "not ready" for about this long at first.
slow_citizen="F132604985"
slow_seconds=20

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
	# In the reverse order of their start, each with SIGTERM: the bank's application and the slow agency,
	# then the connectors, the hub last. They shut down gracefully.
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

# http_body HOST:PORT PATH: prints the body of a plain-HTTP GET; nothing when nothing answers.
http_body() {
	local hostport="$1" path="$2"
	(
		exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || exit 0
		printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3
		while IFS= read -r -t 5 line <&3; do
			[[ "$line" == $'\r' || -z "$line" ]] && break
		done
		cat <&3
	) 2>/dev/null
}

# tcp_in_use HOST:PORT: true if something accepts TCP connections there.
tcp_in_use() {
	local host="${1%:*}" port="${1##*:}"
	(exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# wait_ready NAME HOST:PORT LOGFILE PID [PATH]: waits up to 60 s for PATH (default /readyz) to answer 200.
wait_ready() {
	local name="$1" hostport="$2" log="$3" pid="$4" path="${5:-/readyz}" code
	for _ in $(seq 600); do
		kill -0 "$pid" 2>/dev/null || fail_with_log "$name" "$log" "$name exited while starting"
		code="$(http_status "$hostport" "$path")"
		if [[ "$code" == 200 ]]; then
			echo "  $name is ready (http://$hostport$path)"
			return
		fi
		sleep 0.1
	done
	fail_with_log "$name" "$log" "$name not ready within 60s (last $path status $code)"
}

# slow_agency INCOME_DIR FIA_TELEMETRY: plays an agency system that is slow the first time it is asked. It
# puts "retry in $slow_seconds s" beside $slow_citizen's income file (the file backend answers "not ready"
# while that .retry file exists). When fia-dp's metrics show it answered "pending", it lets the next try
# through shortly before the bank's connector retries, and a minute later makes the agency slow again for
# the next application. It sleeps 1 s at a time so that SIGTERM stops it at once.
slow_agency() {
	local retry="$1/$slow_citizen.json.retry" fia_tel="$2" seen now since
	pending_count() {
		http_body "$fia_tel" /metrics |
			awk '/^mydata_connector_dp_transfers_total\{/ && /dataset="fia.income"/ && /outcome="pending"/ {n += $NF} END {print n + 0}'
	}
	echo "$slow_seconds" >"$retry"
	seen="$(pending_count)"
	echo "slow agency: fia.income for $slow_citizen answers \"not ready, retry in ${slow_seconds}s\""
	while true; do
		sleep 1
		now="$(pending_count)"
		((now > seen)) || continue
		echo "slow agency: fia-dp answered \"not ready\"; the income is ready in $((slow_seconds - 5))s"
		since=$SECONDS
		while ((SECONDS - since < slow_seconds - 5)); do sleep 1; done
		rm -f "$retry"
		echo "slow agency: the income is ready"
		since=$SECONDS
		while ((SECONDS - since < 60)); do sleep 1; done
		echo "$slow_seconds" >"$retry"
		seen="$(pending_count)"
		echo "slow agency: slow again for the next application"
	done
}

# ---- 0. preflight and build --------------------------------------------------------------------------------

# The hub's nodes. hub-1 is the one node of the default demo. With DEMO_HUB_NODES=3 or 5, hub-i (i = 2..N) has
# API 127.0.0.1:(8442+i), raft :(8299+i) and portal :(8079+i), i.e. 8444-8447, 8301-8304 and 8081-8084, which
# nothing else of the demo uses (the connectors' local APIs are 8440-8442, the bank's application 8000).
# Telemetry cannot go on from 9443 likewise: 9444 is bank-sp's (the connectors' are 9441, 9442 and 9444), so
# hub-i's is 127.0.0.1:(9450+i), i.e. 9452-9455.
case "$hub_nodes" in
1 | 3 | 5) ;;
*) die "DEMO_HUB_NODES=$hub_nodes: the demo runs 1, 3 or 5 hub nodes (2 or 4 raft voters survive no more failures than 1 or 3)" ;;
esac
hub_ids=(hub-1) hub_apis=("$hub_api") hub_rafts=("$hub_raft") hub_tels=("$hub_tel") hub_portals=("$hub_portal")
hub_confs=("$demo/hub.yaml") hub_datas=("$demo/hub") hub_publics=("http://$portal_host:${hub_portal##*:}")
for ((i = 2; i <= hub_nodes; i++)); do
	hub_ids+=("hub-$i")
	hub_apis+=("127.0.0.1:$((8442 + i))")
	hub_rafts+=("127.0.0.1:$((8299 + i))")
	hub_tels+=("127.0.0.1:$((9450 + i))")
	hub_portals+=("127.0.0.1:$((8079 + i))")
	hub_publics+=("http://$portal_host:$((8079 + i))")
	hub_confs+=("$demo/hub-$i.yaml")
	hub_datas+=("$demo/hub-$i")
done
# Process names, which name the logs too (logs/NAME.log): "hub" alone, as ever; hub-1..hub-N in a cluster.
if ((hub_nodes == 1)); then
	hub_names=(hub)
else
	hub_names=("${hub_ids[@]}")
fi
hub_logs=()
for name in "${hub_names[@]}"; do
	hub_logs+=("$demo/logs/$name.log")
done

ports=("${hub_apis[@]}" "${hub_rafts[@]}" "${hub_tels[@]}" "${hub_portals[@]}" "$bank_app" "$mail_smtp" "$mail_web" "$registry_addr" "$signer_addr" "$counter_addr")
for c in "${connectors[@]}"; do
	read -r _ _ _ _ tel api <<<"$c"
	ports+=("$tel" "$api")
done
for p in "${ports[@]}"; do
	if tcp_in_use "$p"; then
		die "$p is already in use (another demo still running?). Stop whatever listens there and try again."
	fi
done

# say_if_sqlite_builds: the first cgo build of SQLite (github.com/mattn/go-sqlite3, which the hub, the
# connector and mkdb link) compiles its C for a minute or two and prints nothing meanwhile; say so first.
# `go list` tells from the build cache, in a fraction of a second, whether it will be compiled.
say_if_sqlite_builds() {
	if [[ "$(cd "$root" && CGO_ENABLED=1 go list -f '{{.Stale}}' github.com/mattn/go-sqlite3 2>/dev/null)" == true ]]; then
		echo "  compiling SQLite (cgo) on the first build: about 1–2 minutes with no output; later builds take seconds"
	fi
}

if [[ "${DEMO_SKIP_BUILD:-}" != 1 ]]; then
	step "Building the binaries"
	say_if_sqlite_builds
	version="$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)"
	(cd "$root" && run env CGO_ENABLED=1 go build -ldflags "-X github.com/mydatafed/mydata/pkg/telemetry.Version=$version" \
		-o "$bin/" ./hub/cmd/mydata-hub ./connector/cmd/mydata-connector)
fi
[[ -x "$hub_bin" && -x "$conn_bin" ]] || die "no binaries in ${bin#$root/}/: run make build"
echo "  $("$hub_bin" version), $("$conn_bin" version)"

step "Building the sample programs: the bank's web application, the agency database builder, the login methods' counterparts"
say_if_sqlite_builds
(cd "$root" && run env CGO_ENABLED=1 go build -o "$demo_bin/" ./packaging/demo/samplebank ./packaging/demo/data/mkdb ./packaging/demo/identity)

step "Making a fresh state directory ${demo#$root/}/"
rm -rf "$demo"
mkdir -p "$demo/logs" "$agency/moi" "$agency/fia"
chmod 700 "$demo"

# The agencies' own systems: a copy of the sample data, so that the slow agency's .retry file stays out of
# the repository, and the property register as a SQLite database built from its SQL script.
cp -R "$data_src/moi/household" "$agency/moi/household"
cp -R "$data_src/fia/income" "$agency/fia/income"
run "$demo_bin/mkdb" --sql "$data_src/fia/property.sql" --out "$agency/fia/property.db"
echo "  ${agency#$root/}/: moi/household/*.json, fia/income/*.json, fia/property.db"

# What the login methods need from outside the hub: the card issuer's root, issuing CA and CRL, and a card per
# citizen (identity ca, which keeps a CA it finds; this directory is fresh each run, so it makes one); the
# household/NHI registry's records (the sample registry's, which list every sample citizen) and the bearer
# token the hub sends it; a directory for the mail the hub sends.
ident="$demo/identity"
ca_dir="$ident/ca"
mkdir -p "$ident/mail"
run "$demo_bin/identity" ca --dir "$ca_dir" --citizens "$(IFS=,; echo "${citizens[*]}")" --revoked "$card_citizen" | sed 's/^/    /'
cp "$root/pkg/docregistry/testdata/sample-registry.json" "$ident/registry.json"
(umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$ident/registry.token")
echo "  ${ident#$root/}/: ca/ (root.pem, crl.pem, cards/<ID>.pem), registry.json, registry.token, mail/"

# login_conf: the identity and notify sections, the same on every hub node. The passkey origins list every
# node's portal: a passkey registered on one works on all (they share the relying party id and the state).
login_conf() {
	local origins
	origins="$(printf '"%s", ' "${hub_publics[@]}")"
	cat <<EOF
identity:
  # The development login: anyone types a national ID and picks a login method. Never in production. The
  # methods below replace the simulated ones of the same id.
  dev_login: true
  # One-time codes, to an e-mail address the citizen verified on /account. They arrive at the demo's mail
  # server (notify.mail), which prints them in logs/mail.log and lists them on http://$mail_web.
  otp:
    enabled: true
    level: 1
  # Passkeys, registered on /account from a session of level 2 or higher. WebAuthn wants a secure context
  # and a domain name: http://localhost is both, http://127.0.0.1 is not.
  passkey:
    enabled: true
    level: 2
    register_level: 2
    rp_id: $portal_host
    origins: [${origins%, }]
  # The natural-person certificate (自然人憑證), with the demo's test CA (identity ca) in place of MOICA's, and
  # the demo's signing component (identity signer) in place of the card reader's.
  certificates:
    - id: moica
      name_zh: 自然人憑證
      name_en: Citizen digital certificate (MOICA)
      level: 3
      signer_url: http://$signer_addr/sign
      roots: [$ca_dir/root.pem]
      intermediates: [$ca_dir/intermediate.pem]
      crls: [$ca_dir/crl.pem]
      require_crl: true
      # The demo's cards carry the whole ID in the subject's serialNumber (2.5.4.5). A real MOICA card
      # carries its last four digits only: kind extension_last4 with the card's OID (docs/identity.md).
      subject_rule: {kind: subject_attribute}
  # Two documents (雙證件), checked with the demo's sample household/NHI registry (identity registry) over
  # plain HTTP, which the hub allows to a loopback address only.
  two_docs:
    enabled: true
    level: 2
    url: http://$registry_addr/
    token_file: $ident/registry.token
notify:
  # The demo's mail server (identity mail): plain SMTP on loopback, which start_tls none allows there only.
  mail:
    host: ${mail_smtp%:*}
    port: ${mail_smtp##*:}
    from: MyData Demo <no-reply@$trust_domain>
    start_tls: none
EOF
}

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
portal:
  listen: $hub_portal
  public_url: ${hub_publics[0]}
$(login_conf)
EOF
echo "  ${hub_conf#$root/}"
# hub-2..hub-N: the same but for their node_id, data_dir and ports. They join hub-1's cluster (serve --join
# and --token, below) and get the federation root CA and the cluster key from it.
for ((i = 1; i < hub_nodes; i++)); do
	cat >"${hub_confs[i]}" <<EOF
# Demo hub node ${hub_ids[i]}: see conf/hub.yaml for every key. Made by packaging/demo/run.sh; overwritten on each run.
trust_domain: $trust_domain
node_id: ${hub_ids[i]}
data_dir: ${hub_datas[i]}
api:
  listen: ${hub_apis[i]}
raft:
  listen: ${hub_rafts[i]}
  # It joins hub-1's cluster, and never makes one of its own (with its data_dir lost, it refuses to start).
  bootstrap: false
telemetry:
  listen: ${hub_tels[i]}
portal:
  listen: ${hub_portals[i]}
  public_url: ${hub_publics[i]}
$(login_conf)
EOF
	echo "  ${hub_confs[i]#"$root"/}"
done

# The connectors' hub.url: hub-1's API, or every node's, which they move between when one fails.
hub_url="https://$hub_api"
if ((hub_nodes > 1)); then
	hub_url="$(printf 'https://%s, ' "${hub_apis[@]}")"
	hub_url="[${hub_url%, }]"
fi

# datasets_of NAME: the datasets section of a connector's configuration, where its agency keeps the data.
datasets_of() {
	case "$1" in
	moi-dp | moi-dp2)
		cat <<EOF
datasets:
  moi.household:
    backend:
      type: file
      file:
        dir: $agency/moi/household
EOF
		;;
	fia-dp)
		cat <<EOF
datasets:
  fia.income:
    backend:
      type: file
      file:
        dir: $agency/fia/income
  fia.property:
    backend:
      type: sql
      sql:
        driver: sqlite3
        dsn: file:$agency/fia/property.db?mode=ro
        query: SELECT kind, item, location, area_m2, share, assessed_value FROM property WHERE national_id = ? ORDER BY seq
EOF
		;;
	esac
}

# counter_of NAME: the counter page of the bank's connector; its teller's account is made here, with the
# connector's own command, as an operator would.
counter_of() {
	[[ "$1" == bank-sp ]] || return 0
	cat <<EOF
counter:
  listen: $counter_addr
  staff_file: $demo/counter-staff
EOF
}
printf '%s\n' "$counter_password" | "$conn_bin" counter passwd "$counter_staff" >"$demo/counter-staff"
chmod 600 "$demo/counter-staff"

for c in "${connectors[@]}"; do
	read -r name org _ quic tel api <<<"$c"
	cat >"$demo/$name.yaml" <<EOF
# Demo connector $name: see conf/connector.yaml for every key. Made by packaging/demo/run.sh.
trust_domain: $trust_domain
org: $org
name: $name
data_dir: $demo/$name
hub:
  url: $hub_url
quic:
  listen: $quic
tcp:
  # The fallback where UDP is blocked: the same port number, over TCP.
  listen: $quic
telemetry:
  listen: $tel
exchange:
  listen: $api
$(datasets_of "$name")
$(counter_of "$name")
EOF
	echo "  ${demo#$root/}/$name.yaml"
done

# ---- 1. the hub --------------------------------------------------------------------------------------------

step "Starting the hub (one-node raft cluster, embedded CA, citizen portal)"
hub_log="${hub_logs[0]}"
start "${hub_names[0]}" "$hub_log" "$hub_bin" serve --config "$hub_conf"
hub_pid="${pids[-1]}"
hub_pids=("$hub_pid")
wait_ready "${hub_names[0]}" "$hub_tel" "$hub_log" "$hub_pid"

admin() { run "$hub_bin" admin --config "$hub_conf" "$@"; }

fingerprint="$(run "$hub_bin" ca fingerprint --config "$hub_conf")"
echo "  $fingerprint"

# wait_voters N: waits up to about 60 s until hub-1's `cluster status` counts N voters. A node joins as a
# non-voter; the leader promotes it once it has caught up.
wait_voters() {
	local want="$1" voters=0
	for _ in $(seq 300); do
		voters="$("$hub_bin" admin --config "$hub_conf" --json cluster status 2>/dev/null | grep -o '"suffrage": *"voter"' | wc -l)" || true
		if ((voters >= want)); then
			echo "  the cluster has $voters voters"
			return
		fi
		sleep 0.2
	done
	"$hub_bin" admin --config "$hub_conf" cluster status >&2 || true
	die "the cluster has $voters voters, not $want, after 60s (see ${demo#"$root"/}/logs/)"
}

if ((hub_nodes > 1)); then
	step "Joining hub-2..hub-$hub_nodes to the cluster through hub-1, one at a time, each with a single-use node join token"
	for ((i = 1; i < hub_nodes; i++)); do
		token="$(admin cluster join-token --ttl 10m)"
		secret="$token"
		echo "  token for ${hub_ids[i]}: $(show "$token") (single use, valid 10 minutes, carries the CA fingerprint)"
		start "${hub_names[i]}" "${hub_logs[i]}" "$hub_bin" serve --config "${hub_confs[i]}" --join "https://$hub_api" --token "$token"
		secret=""
		hub_pids+=("${pids[-1]}")
		wait_ready "${hub_names[i]}" "${hub_tels[i]}" "${hub_logs[i]}" "${hub_pids[i]}"
		wait_voters $((i + 1))
	done
	admin cluster status
fi

# ---- 2. organisations and connectors -----------------------------------------------------------------------

step "Registering the organisations"
admin org add --code moi --name-zh 內政部 --name-en "Ministry of the Interior" --type central-agency
admin org add --code fia --name-zh 財政部財政資訊中心 --name-en "Fiscal Information Agency" --type central-agency
admin org add --code demobank --name-zh 示範銀行 --name-en "Demo Bank (a sample bank)" --type financial-institution
admin org list

step "Registering their connectors"
for c in "${connectors[@]}"; do
	read -r name org roles quic _ _ <<<"$c"
	admin connector add --org "$org" --name "$name" --roles "$roles" --address "$quic" --tcp-address "$quic"
done
admin connector list

# ---- 3. join tokens and enrollment -------------------------------------------------------------------------

step "Enrolling each connector with a single-use join token, pinning the hub CA"
for c in "${connectors[@]}"; do
	read -r name org _ _ _ _ <<<"$c"
	token="$(admin token create --org "$org" --connector "$name" --ttl 10m)"
	secret="$token"
	echo "  token for $org/$name: $(show "$token") (single use, valid 10 minutes, carries the CA fingerprint)"
	run "$conn_bin" enroll --config "$demo/$name.yaml" --token "$token" --hub-ca "$fingerprint"
	secret=""
done

# ---- 4. the connectors -------------------------------------------------------------------------------------

step "Starting the connectors"
for c in "${connectors[@]}"; do
	read -r name _ _ _ _ _ <<<"$c"
	start "$name" "$demo/logs/$name.log" "$conn_bin" serve --config "$demo/$name.yaml"
done
i=$hub_nodes
for c in "${connectors[@]}"; do
	read -r name _ _ _ tel _ <<<"$c"
	wait_ready "$name" "$tel" "$demo/logs/$name.log" "${pids[i]}"
	i=$((i + 1))
done

# ---- 5. QUIC mTLS between connectors -----------------------------------------------------------------------

step "Proving the QUIC mutual-TLS channel: the bank pings each data provider"
for target in moi/moi-dp moi/moi-dp2 fia/fia-dp; do
	run "$conn_bin" status --config "$demo/bank-sp.yaml" --peer "$target" | sed 's/^/    /'
done

# ---- 6. the catalogue: datasets and the bank's online service ----------------------------------------------

step "Registering the datasets and the bank's online service"
admin dataset add --id moi.household --name-zh 戶籍資料 --name-en "Household registration" --dp moi/moi-dp,moi-dp2 --min-aal 2 --download \
	--description "Address, head of household, and every member with relation and date of birth"
admin dataset add --id fia.income --name-zh 個人所得資料 --name-en "Income" --dp fia/fia-dp --min-aal 2 --async --download \
	--description "Income of the last two tax years, by item and payer"
admin dataset add --id fia.property --name-zh 個人財產資料 --name-en "Property" --dp fia/fia-dp --min-aal 2 --download \
	--description "Land, buildings and vehicles, with share and assessed value"
admin service add --id "$client_id" --name-zh 示範銀行線上信用卡申辦 --name-en "Demo Bank online credit-card application" \
	--sp demobank/bank-sp --datasets moi.household,fia.income,fia.property \
	--purpose "信用卡申辦：核對申請人之身分、戶籍、所得與財產，以審核申請及核定信用額度。 Credit-card application: to check the applicant's identity, household, income and property, decide on the application and set a credit limit." \
	--terms "示範銀行僅將本次取得之資料用於審核您的信用卡申請，並依銀行法及個人資料保護法保存及銷毀。 Demo Bank uses this data only to assess your credit-card application, and keeps and destroys it as the Banking Act and the Personal Data Protection Act require." \
	--terms-version 2026-11 --redirect-uri "http://$bank_app/callback"
admin service add --id "$counter_id" --modes counter --name-zh 示範銀行臨櫃開戶 --name-en "Demo Bank account opening at the counter" \
	--sp demobank/bank-sp --datasets moi.household,fia.income \
	--purpose "臨櫃開戶：核對申請人之身分、戶籍與所得，免附紙本證明。 Opening an account at a branch: to check the applicant's identity, household and income without paper documents." \
	--terms "行員僅於櫃檯畫面檢視本次資料，按「完成」後即刪除，不列印、不留存。 The teller views this data on the counter screen only; it is deleted when they press Done, and is neither printed nor kept." \
	--terms-version 2026-12
admin dataset list
admin service list

# Tickets are sealed to each data provider's key, which a connector publishes once it runs.
keys=0
for _ in $(seq 300); do
	keys="$("$hub_bin" admin --config "$hub_conf" --json connector list | grep -o '"hpke_key"' | wc -l)"
	((keys >= 3)) && break
	sleep 0.1
done
((keys >= 3)) || die "the connectors did not publish their keys within 30s (see ${demo#$root/}/logs/)"
echo "  every connector has published its HPKE key"

# ---- 7. a slow agency --------------------------------------------------------------------------------------

step "Making the income agency slow for $slow_citizen (\"not ready, retry in ${slow_seconds}s\" at first)"
slow_log="$demo/logs/slow-agency.log"
slow_agency "$agency/fia/income" 127.0.0.1:9442 >"$slow_log" 2>&1 &
pids+=("$!")
names+=("slow-agency")
echo "  ${agency#$root/}/fia/income/$slow_citizen.json.retry; log ${slow_log#$root/}"

# ---- 8. what the login methods talk to ---------------------------------------------------------------------

step "Starting what the login methods talk to: the mail server, the household/NHI registry, the card's signer"
mail_log="$demo/logs/mail.log"
start mail "$mail_log" "$demo_bin/identity" mail --listen "$mail_smtp" --http "$mail_web" --dir "$ident/mail"
mail_pid="${pids[-1]}"
registry_log="$demo/logs/registry.log"
start registry "$registry_log" "$demo_bin/identity" registry --records "$ident/registry.json" \
	--token-file "$ident/registry.token" --listen "$registry_addr"
registry_pid="${pids[-1]}"
# signer_cmd ID: the command that runs the signing component with ID's card (files ID.pem and ID.key) in the
# reader, for every portal's origin.
signer_cmd() {
	local a=("$demo_bin/identity" signer --cert "$ca_dir/cards/$1.pem" --key "$ca_dir/cards/$1.key" --listen "$signer_addr")
	for o in "${hub_publics[@]}"; do a+=(--origin "$o"); done
	printf '%s\n' "${a[@]}"
}
signer_log="$demo/logs/signer.log"
mapfile -t cmd < <(signer_cmd "$card_citizen")
start signer "$signer_log" "${cmd[@]}"
signer_pid="${pids[-1]}"
wait_ready mail "$mail_web" "$mail_log" "$mail_pid" /
wait_ready signer "$signer_addr" "$signer_log" "$signer_pid" /
# The registry answers POSTs only: a GET gets 405, which says it is up.
for _ in $(seq 100); do
	kill -0 "$registry_pid" 2>/dev/null || fail_with_log registry "$registry_log" "the registry exited while starting"
	[[ "$(http_status "$registry_addr" /)" == 405 ]] && break
	sleep 0.1
done
[[ "$(http_status "$registry_addr" /)" == 405 ]] || fail_with_log registry "$registry_log" "the registry does not answer on $registry_addr"
echo "  registry is ready (http://$registry_addr/)"

# ---- 9. the bank's web application -------------------------------------------------------------------------

step "Starting the sample bank's web application"
bank_log="$demo/logs/samplebank.log"
# It sends citizens to the portal's public URL (localhost), where their portal cookies and passkeys live.
start samplebank "$bank_log" "$demo_bin/samplebank" --listen "$bank_app" --hub-portal "${hub_publics[0]}" \
	--connector-api "http://$bank_api" --client-id "$client_id" --redirect-uri "http://$bank_app/callback"
bank_pid="${pids[-1]}"
wait_ready samplebank "$bank_app" "$bank_log" "$bank_pid" /healthz
for hostport in "$bank_app" "${hub_portals[@]}"; do
	code="$(http_status "$hostport" /)"
	[[ "$code" == 200 ]] || die "http://$hostport/ answered $code"
done
if ((hub_nodes == 1)); then
	echo "  the bank's application form and the hub's portal answer"
else
	echo "  the bank's application form and every hub node's portal answer"
fi
# Each portal's login page lists the real methods (the page renders each as id="method-<id>").
for hostport in "${hub_portals[@]}"; do
	page="$(http_body "$hostport" /login)"
	for id in moica two-docs otp passkey; do
		[[ "$page" == *"id=\"method-$id\""* ]] || die "http://$hostport/login does not list the login method $id (no id=\"method-$id\")"
	done
done
echo "  the login page lists the certificate, two-documents, one-time-code and passkey methods"
code="$(http_status "$counter_addr" /login)"
[[ "$code" == 200 ]] || die "the bank's counter page http://$counter_addr/login answered $code"
echo "  the bank's counter page answers"

# ---- 9. summary --------------------------------------------------------------------------------------------

r() { echo "${1#$root/}"; }
# docs_field NAME: a field of $docs_citizen's record in the sample registry (one record a line).
docs_field() {
	grep -F "\"national_id\": \"$docs_citizen\"" "$ident/registry.json" | sed -nE "s/.*\"$1\": *\"([^\"]*)\".*/\1/p"
}
docs_nhi="$(docs_field nhi_card)" docs_household="$(docs_field household)"
docs_date="$(docs_field issue_date)" docs_type="$(docs_field issue_type)"
docs_roc=""
if [[ "$docs_date" =~ ^([0-9]{4})-([0-9]{2})-([0-9]{2})$ ]]; then
	docs_roc="$(printf '%03d/%s/%s' $((10#${BASH_REMATCH[1]} - 1911)) "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}")"
fi
portal_url="${hub_publics[0]}"
other_card="${citizens[1]}"
mapfile -t cmd < <(signer_cmd "$other_card")
cat <<EOF

${bold}${green}The MyData Federation demo is running.${reset}  (trust domain $trust_domain; paths are relative to $root)

${bold}Open http://$bank_app and apply with a sample citizen (IDs listed).${reset}
  Log in on the hub with a method of level 2 or higher (see "Logging in" below), or on its development
  login pick a simulated one, e.g. 健保卡 NHI card.
  B220713459  陳怡君 Chen Yi-chun    household of 3 and income delivered; owns nothing, so property is "no record"
  F132604985  林志豪 Lin Chih-hao    income "not ready" at first: the bank's page retries until it arrives (~20 s)
  A123456789  王大明 Wang Da-ming    household of 4; salary, interest, dividends; land, a flat and a car
  E225810349  黃淑芬 Huang Shu-fen   professional and rental income; land and two buildings
  H120945179  張家豪 Chang Chia-hao  two employers; a scooter
  Every person and figure is fictional (packaging/demo/data). Every use of the data is then in the
  citizen's history: $portal_url/history

${bold}Logging in${reset} at $portal_url/login (use localhost, not 127.0.0.1: passkeys and the portal's cookie live there)
  自然人憑證 citizen certificate (level 3)
      The signer (pid $signer_pid) has $card_citizen's card in the reader: type $card_citizen and press the button; the
      page asks http://$signer_addr/sign to sign (log $(r "$signer_log")). Another ID with this card is refused.
      To insert another card, e.g. $other_card's, stop the signer (kill $signer_pid) and start it with that card:
        $(show "${cmd[@]}")
      ${card_citizen}-revoked is $card_citizen's old card, reported lost and in the CRL: with it in the reader
      the login is refused. Cards: $(r "$ca_dir")/cards/<ID>.pem; the CA's root and CRL: $(r "$ca_dir")/.
  雙證件 two documents (level 2), checked with the sample household/NHI registry (http://$registry_addr)
      e.g. $docs_citizen: NHI card $docs_nhi, and household $docs_household, or ID issued $docs_date (${docs_roc:-?}) $docs_type.
      The first login this way also sends a one-time code, so verify an e-mail address for that citizen first
      (below); without one, the code goes nowhere. Records: $(r "$ident/registry.json")
  一次性驗證碼 one-time code by e-mail (level 1: the portal's own pages, not the bank's datasets, which need 2)
      Log in another way, open $portal_url/account and add an e-mail address (e.g. ${docs_citizen,,}@example.com).
      Codes arrive at the demo's mail server: http://$mail_web (newest first), or
        grep code $(r "$mail_log")
      Type the code there; from then on that citizen can log in with a one-time code.
  通行金鑰 passkey (level 2)
      Log in with level 2 or more, open $portal_url/account and register a passkey (the browser's own, a phone or
      a security key); then log out and log in with it on $portal_url/login.
  Development login: any sample ID, and a simulated method (NHI card, chip bank card, TW FidO).

${bold}Sample bank${reset} (示範銀行 Demo Bank, pid $bank_pid)
  web application       http://$bank_app        service $client_id, returns to http://$bank_app/callback
  log                   $(r "$bank_log")


${bold}Download your own data${reset} (個人化資料下載): at $portal_url/download a citizen picks datasets, logs in, and
  presses Download. The browser makes a key only it holds; the hub relays each agency's answer sealed to it and
  cannot read it. The page checks each agency's signature and saves one zip package, which anyone can check:
    bin/mydata-connector verify --config $(r "$demo/bank-sp.yaml") ~/Downloads/mydata-<id>.zip
  For $slow_citizen the income is "being prepared": fetch it later from the history (same browser).

${bold}Counter verification${reset} (臨櫃核驗): at $portal_url/counter a citizen picks "Demo Bank account opening at the
  counter", agrees, and gets an 8-character code and its QR code (valid 20 minutes, once). A teller logs in to
  the bank's counter page http://$counter_addr as $counter_staff / $counter_password, types the code, sees the
  household and income, and presses Done, which deletes them. Staff accounts: $(r "$demo/counter-staff")
EOF
if ((hub_nodes == 1)); then
	cat <<EOF
${bold}Hub${reset} (node hub-1, pid $hub_pid)
  citizen portal        $portal_url        login, account, consent pages, history (listens on $hub_portal)
  API (HTTPS, mTLS)     https://$hub_api        e.g. curl -sk https://$hub_api/v1/health
  raft (mTLS)           $hub_raft
  metrics               http://$hub_tel/metrics
  health / ready        http://$hub_tel/healthz   http://$hub_tel/readyz
  CA fingerprint        $fingerprint
  config / data / log   $(r "$hub_conf")   $(r "$demo/hub")/   $(r "$hub_log")

EOF
else
	printf '%sHub cluster%s (%s raft nodes; every node serves the API, the portal and admin commands)\n' "$bold" "$reset" "$hub_nodes"
	for i in "${!hub_ids[@]}"; do
		printf '  %-8s pid %s\n' "${hub_ids[i]}" "${hub_pids[i]}"
		printf '           citizen portal %s   API https://%s   raft %s\n' "${hub_publics[i]}" "${hub_apis[i]}" "${hub_rafts[i]}"
		printf '           metrics http://%s/metrics   ready http://%s/readyz\n' "${hub_tels[i]}" "${hub_tels[i]}"
		printf '           config %s   data %s/   log %s\n' "$(r "${hub_confs[i]}")" "$(r "${hub_datas[i]}")" "$(r "${hub_logs[i]}")"
	done
	cat <<EOF
  CA fingerprint        $fingerprint
  cluster status        bin/mydata-hub admin --config $(r "$hub_conf") cluster status
                        (a node's own config asks that node: --config $(r "${hub_confs[1]}") asks ${hub_ids[1]})
  Any node's portal works: sessions and consent forms are signed with the cluster's shared keys. The bank's
  application sends browsers to hub-1's, $portal_url. The connectors list every node in hub.url.

EOF
fi
printf '%sConnectors%s\n' "$bold" "$reset"
i=$hub_nodes
for c in "${connectors[@]}"; do
	read -r name org roles quic tel api <<<"$c"
	printf '  %-8s spiffe://%s/org/%s/connector/%s  (%s, pid %s)\n' "$name" "$trust_domain" "$org" "$name" "$roles" "${pids[i]}"
	printf '           QUIC %s (udp)   metrics http://%s/metrics   ready http://%s/readyz\n' "$quic" "$tel" "$tel"
	case "$name" in
	moi-dp | moi-dp2) printf '           moi.household: files in %s/ (moi-dp and moi-dp2 both serve it)\n' "$(r "$agency/moi/household")" ;;
	fia-dp) printf '           fia.income: files in %s/   fia.property: SQLite %s\n' "$(r "$agency/fia/income")" "$(r "$agency/fia/property.db")" ;;
	bank-sp) printf '           local API http://%s, which the bank'"'"'s web application calls\n' "$api" ;;
	esac
	printf '           config %s   log %s\n' "$(r "$demo/$name.yaml")" "$(r "$demo/logs/$name.log")"
	i=$((i + 1))
done
cat <<EOF

${bold}Try${reset} (from $root)
  bin/mydata-hub admin --config $(r "$hub_conf") dataset list
  bin/mydata-hub admin --config $(r "$hub_conf") service list
  bin/mydata-connector audit export --config $(r "$demo/bank-sp.yaml")
      every transfer the bank received: dataset, time, counterpart, outcome; the citizen only as a keyed hash
  bin/mydata-connector audit verify --config $(r "$demo/fia-dp.yaml")
  bin/mydata-hub admin --config $(r "$hub_conf") dataset maintenance --id fia.property
      then apply again: the consent page and the bank both show property as under maintenance;
      'dataset activate --id fia.property' brings it back
  bin/mydata-connector status --config $(r "$demo/bank-sp.yaml") --peer fia/fia-dp
  bin/mydata-hub admin --config $(r "$hub_conf") connector suspend --org fia --name fia-dp
      then the status --peer above is refused, and an application gets income and property as unavailable;
      'connector activate' lets it back in
  bin/mydata-hub admin --config $(r "$hub_conf") connector revoke --org fia --name fia-dp
      revocation is final; every connector gets the new directory by long-poll at once
  kill ${pids[hub_nodes]}   (moi-dp)
      connector HA: apply again and the household data comes from moi-dp2 (the bank's connector passes over
      the dead one); within 30 s 'bin/mydata-hub admin --config $(r "$hub_conf") connector list' shows moi-dp
      'active (down)'. Start it again with bin/mydata-connector serve --config $(r "$demo/moi-dp.yaml")
  tail -f $(r "$demo/logs")/*.log
EOF
if ((hub_nodes > 1)); then
	cat <<EOF
  bin/mydata-hub admin --config $(r "$hub_conf") cluster status
      which node leads; then kill the leader: kill -9 <its pid, above>. Within seconds the others elect a
      new one: ask a survivor, e.g. bin/mydata-hub admin --config $(r "${hub_confs[1]}") cluster status,
      which shows the dead node as HEALTHY NO. Keep using the portal of another node (${hub_publics[1]},
      ${hub_publics[2]}); if hub-1 died, the bank's application still sends you to :${hub_portal##*:}: change
      the port in the address bar. The connectors move to the next node of their hub.url by themselves, and
      the demo goes on without the dead node; to bring it back, run bin/mydata-hub serve --config <its config>
      in another terminal (it rejoins with its state; Ctrl-C there stops it).
EOF
fi
echo

if [[ "${DEMO_EXIT_AFTER_START:-}" == 1 ]]; then
	echo "DEMO_EXIT_AFTER_START=1: stopping now."
	exit 0
fi

echo "Press Ctrl-C to stop everything."
# Wait until Ctrl-C, or until one of the processes dies on its own, which is an error.
# In a cluster a hub node may die (kill -9 the leader, as the summary suggests): the others go on, so does
# the demo.
while true; do
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[i]}" 2>/dev/null; then
			wait "${pids[i]}" 2>/dev/null && rc=0 || rc=$?
			name="${names[i]}"
			log="$demo/logs/$name.log"
			unset 'pids[i]' 'names[i]'
			pids=("${pids[@]}") names=("${names[@]}")
			if [[ "$name" == signer ]]; then
				echo "demo: the signer stopped (exit status $rc): no card in the reader. To insert one, run in another terminal:"
				echo "  $(show "${cmd[@]}")   (another ID: change the card's file names)"
				break # the indices moved
			fi
			if [[ "$name" == moi-dp || "$name" == moi-dp2 ]]; then
				echo "demo: $name exited (exit status $rc); the Ministry's other connector serves moi.household (log $(r "$log"))"
				break # the indices moved
			fi
			if ((hub_nodes > 1)) && [[ "$name" == hub-* ]]; then
				echo "demo: hub node $name exited (exit status $rc); the cluster goes on while a majority of its $hub_nodes nodes runs (log $(r "$log"))"
				break # the indices moved
			fi
			fail_with_log "$name" "$log" "$name exited unexpectedly (exit status $rc)"
		fi
	done
	sleep 1 &
	# 2>/dev/null: not bash's own "Killed" line for a process that died of a signal; the lines above say it.
	wait $! 2>/dev/null || true
done
