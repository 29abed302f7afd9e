#!/usr/bin/env bash
# One-shot setup of the local federation in packaging/docker/compose.yaml, run by its "setup" service once the
# hub is healthy: what the operator and the three agencies would do by hand (docs/operations.md).
#   1. register the organisations, connectors, datasets and the sample service (skipping what exists);
#   2. for each connector not enrolled yet, make a join token and enroll it into the connector's volume,
#      mounted here at /enroll/<name>, with the connector's own configuration from /conf/<name>.yaml.
# It is idempotent: `docker compose up` again does nothing new.
set -euo pipefail

hub_conf=${HUB_CONFIG:-/etc/mydata/hub.yaml}
conf_dir=${CONF_DIR:-/conf}
enroll_dir=${ENROLL_DIR:-/enroll}
admin() { mydata-hub admin --config "$hub_conf" "$@"; }

# exists LIST_OUTPUT NAME: true if a line of the listing starts with NAME, or NAME is in it as a column.
exists() { grep -Eq "(^|[[:space:]])$2([[:space:]]|$)" <<<"$1"; }

orgs=$(admin org list)
exists "$orgs" moi || admin org add --code moi --name-zh 內政部 --name-en "Ministry of the Interior" --type central-agency
exists "$orgs" fia || admin org add --code fia --name-zh 財政部財政資訊中心 --name-en "Fiscal Information Agency" --type central-agency
exists "$orgs" demobank || admin org add --code demobank --name-zh 示範銀行 --name-en "Demo Bank (a sample bank)" --type financial-institution

# name org roles
connectors=("moi-dp moi dp" "fia-dp fia dp" "bank-sp demobank sp")
listed=$(admin connector list)
for c in "${connectors[@]}"; do
	read -r name org roles <<<"$c"
	exists "$listed" "$name" || admin connector add --org "$org" --name "$name" --roles "$roles" --address "$name:7443" --tcp-address "$name:7443"
done

datasets=$(admin dataset list)
exists "$datasets" moi.household || admin dataset add --id moi.household --name-zh 戶籍資料 --name-en "Household registration" \
	--dp moi/moi-dp --min-aal 2 --content-type application/json --description "Synthetic household registration records"
exists "$datasets" fia.income || admin dataset add --id fia.income --name-zh 所得資料 --name-en "Income" \
	--dp fia/fia-dp --min-aal 2 --content-type application/json --description "Synthetic income records"

services=$(admin service list)
exists "$services" demobank.loan || admin service add --id demobank.loan --name-zh 線上貸款申請 --name-en "Online loan application" \
	--sp demobank/bank-sp --datasets moi.household,fia.income --purpose "Check identity, household and income for a loan" \
	--terms "The bank uses the data only to assess this loan application and deletes it after 30 days." \
	--terms-version 1 --redirect-uri http://localhost:9000/callback --modes online

for c in "${connectors[@]}"; do
	read -r name org _ <<<"$c"
	dir="$enroll_dir/$name"
	if [[ -s "$dir/identity/svid.pem" ]]; then
		echo "$name: already enrolled"
		continue
	fi
	# The connector's configuration, with its volume's path here as data_dir.
	conf=$(mktemp)
	sed -e "s#^data_dir: .*#data_dir: $dir#" "$conf_dir/$name.yaml" >"$conf"
	token=$(admin token create --org "$org" --connector "$name" --ttl 10m)
	mydata-connector enroll --config "$conf" --token "$token"
	rm -f "$conf"
done
echo "setup done: $(admin connector list | wc -l) lines in the connector list"
