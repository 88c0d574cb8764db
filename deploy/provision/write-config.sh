#!/bin/sh
# Writes a node's agent configuration: $ROOT/etc/rafter/rafter.yaml and,
# when RAFTER_TOKEN is set, $ROOT/etc/default/rafter. ROOT (default /) lets
# tests write into a temporary directory.
#
#   NODE_ID=n1 ZONE=zone-a NODE_IP=192.168.56.11 \
#   PEER_IPS=192.168.56.11,192.168.56.12,192.168.56.13 write-config.sh
#
# Optional: TLS_DIR (default /etc/rafter/tls, holding ca.pem, NODE_ID.pem and
# NODE_ID-key.pem), VIP_LINUX (true|false, default false), VIP_INTERFACE,
# ADMIN_PORT (7700), RAFT_PORT (7701), BACKUP_DIR, RAFTER_TOKEN.
set -eu

: "${NODE_ID:?NODE_ID is required}"
: "${ZONE:?ZONE is required}"
: "${NODE_IP:?NODE_IP is required}"
: "${PEER_IPS:?PEER_IPS is required (comma-separated addresses of every node)}"
ROOT=${ROOT:-}
TLS_DIR=${TLS_DIR:-/etc/rafter/tls}
ADMIN_PORT=${ADMIN_PORT:-7700}
RAFT_PORT=${RAFT_PORT:-7701}
VIP_LINUX=${VIP_LINUX:-false}

join=""
count=0
old_ifs=$IFS
IFS=,
for ip in $PEER_IPS; do
	join="${join:+$join, }$ip:$ADMIN_PORT"
	count=$((count + 1))
done
IFS=$old_ifs

conf_dir="$ROOT/etc/rafter"
mkdir -p "$conf_dir"
tmp="$conf_dir/rafter.yaml.tmp"
cat >"$tmp" <<YAML
# Written by deploy/provision/write-config.sh; check with
#   rafter agent --config /etc/rafter/rafter.yaml --check
node_id: $NODE_ID
zone: $ZONE
data_dir: /var/lib/rafter
bind: $NODE_IP
admin_port: $ADMIN_PORT
raft_port: $RAFT_PORT
bootstrap_expect: $count
join: [$join]
tls_ca: $TLS_DIR/ca.pem
tls_cert: $TLS_DIR/$NODE_ID.pem
tls_key: $TLS_DIR/$NODE_ID-key.pem
access_log: stdout
log_level: info
vip_linux: $VIP_LINUX
YAML
if [ -n "${VIP_INTERFACE:-}" ]; then
	echo "vip_interface: $VIP_INTERFACE" >>"$tmp"
fi
if [ -n "${BACKUP_DIR:-}" ]; then
	printf 'backup_dir: %s\nbackup_every: 1h\nbackup_keep: 24\n' "$BACKUP_DIR" >>"$tmp"
fi
chmod 0640 "$tmp"
mv "$tmp" "$conf_dir/rafter.yaml"

if [ -n "${RAFTER_TOKEN:-}" ]; then
	mkdir -p "$ROOT/etc/default"
	umask 027
	printf 'RAFTER_TOKEN=%s\n' "$RAFTER_TOKEN" >"$ROOT/etc/default/rafter"
fi
echo "wrote $conf_dir/rafter.yaml"
