#!/bin/sh
# Provisions one rafter node from the package built by `make package`:
# install, TLS (created once, on the first node, in the shared directory),
# configuration, the systemd unit, a demo backend registered through the
# rafter-register@ sidecar and, on the last node, the demo manifest.
#
# Environment: NODE_ID, ZONE, NODE_IP, PEERS ("n1=IP,n2=IP,n3=IP" in
# order), SHARED (a directory every node sees, e.g. /vagrant/.vagrant/rafter),
# DIST (where the .deb is), VIP (a Linux VIP in CIDR form on the private
# network, applied by the last node).
set -eu

: "${NODE_ID:?}" "${ZONE:?}" "${NODE_IP:?}" "${PEERS:?}" "${SHARED:?}" "${DIST:?}" "${VIP:?}"
here=$(cd "$(dirname "$0")" && pwd)

# 1. The package.
deb=$(find "$DIST" -maxdepth 1 -name 'rafter_*.deb' | sort | tail -n 1)
if [ -z "$deb" ]; then
	echo "no rafter_*.deb in $DIST: run \`make package\` on the host first" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y "$deb" python3 >/dev/null

# 2. TLS and the admin token: made once by the first node, shared.
mkdir -p "$SHARED"
first=${PEERS%%=*}
if [ "$NODE_ID" = "$first" ] && [ ! -f "$SHARED/tls/ca.pem" ]; then
	rafter tls init --dir "$SHARED/tls" --nodes "$PEERS"
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$SHARED/token"
fi
for f in ca.pem "$NODE_ID.pem" "$NODE_ID-key.pem" ; do
	if [ ! -f "$SHARED/tls/$f" ]; then
		echo "missing $SHARED/tls/$f: provision $first first" >&2
		exit 1
	fi
done
install -d -o root -g rafter -m 0750 /etc/rafter/tls
install -o root -g rafter -m 0640 "$SHARED/tls/ca.pem" "$SHARED/tls/$NODE_ID.pem" "$SHARED/tls/$NODE_ID-key.pem" /etc/rafter/tls/
token=$(cat "$SHARED/token")

# 3. Configuration, checked before the unit starts.
peer_ips=$(echo "$PEERS" | tr ',' '\n' | cut -d= -f2 | paste -sd, -)
NODE_ID=$NODE_ID ZONE=$ZONE NODE_IP=$NODE_IP PEER_IPS=$peer_ips VIP_LINUX=true \
	RAFTER_TOKEN=$token "$here/write-config.sh"
chown root:rafter /etc/rafter/rafter.yaml /etc/default/rafter
rafter agent --config /etc/rafter/rafter.yaml --check

# The CLI on this host talks to its own node.
cat >/etc/profile.d/rafter.sh <<SH
export RAFTER_ADDR=https://$NODE_IP:7700
export RAFTER_TOKEN=$token
export RAFTER_TLS_CA=/etc/rafter/tls/ca.pem
export RAFTER_TLS_CERT=/etc/rafter/tls/$NODE_ID.pem
export RAFTER_TLS_KEY=/etc/rafter/tls/$NODE_ID-key.pem
SH
if id vagrant >/dev/null 2>&1; then
	usermod -a -G rafter vagrant
fi

# 4. The node.
systemctl enable --now rafter.service

# 5. A demo backend on this VM, registered by the sidecar unit.
install -d /srv/rafter-demo
echo "hello from $NODE_ID ($ZONE)" >/srv/rafter-demo/index.html
cat >/etc/systemd/system/rafter-demo-backend.service <<UNIT
[Unit]
Description=rafter demo backend
[Service]
ExecStart=/usr/bin/python3 -m http.server 9000 --bind $NODE_IP --directory /srv/rafter-demo
DynamicUser=yes
[Install]
WantedBy=multi-user.target
UNIT
cat >/etc/rafter/register/demo.env <<ENV
POOL=demo
ADDR=$NODE_IP:9000
ZONE=$ZONE
TTL=10s
WEIGHT=1
RAFTER_ADDR=https://$NODE_IP:7700
RAFTER_TOKEN=$token
RAFTER_TLS_CA=/etc/rafter/tls/ca.pem
RAFTER_TLS_CERT=/etc/rafter/tls/$NODE_ID.pem
RAFTER_TLS_KEY=/etc/rafter/tls/$NODE_ID-key.pem
ENV
chmod 0640 /etc/rafter/register/demo.env
chgrp rafter /etc/rafter/register/demo.env
systemctl daemon-reload
systemctl enable --now rafter-demo-backend.service

# 6. Once every node runs (the last one provisions last), the manifest.
# shellcheck source=/dev/null
. /etc/profile.d/rafter.sh
last=${PEERS##*,}
last=${last%%=*}
if [ "$NODE_ID" = "$last" ]; then
	tries=0
	until rafter status 2>/dev/null | grep '^Leader:' | grep -vq none; do
		tries=$((tries + 1))
		if [ "$tries" -gt 60 ]; then
			echo "no leader after 60s" >&2
			rafter status >&2 || true
			exit 1
		fi
		sleep 1
	done
	VIP=$VIP PEERS=$PEERS "$here/demo-manifest.sh" >/tmp/rafter-demo.yaml
	rafter apply -f /tmp/rafter-demo.yaml
fi
# The pool exists once the manifest is applied; the sidecar retries until then.
systemctl enable --now rafter-register@demo.service
rafter status
