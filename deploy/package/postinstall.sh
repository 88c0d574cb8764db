#!/bin/sh
# Runs after rafter is installed or upgraded (deb: configure; rpm: %post).
set -e

if ! getent group rafter >/dev/null; then
	if command -v addgroup >/dev/null; then
		addgroup --system rafter >/dev/null
	else
		groupadd --system rafter
	fi
fi
if ! getent passwd rafter >/dev/null; then
	if command -v adduser >/dev/null; then
		adduser --system --ingroup rafter --home /var/lib/rafter --no-create-home \
			--shell /usr/sbin/nologin --gecos "rafter load balancer" rafter >/dev/null
	else
		useradd --system --gid rafter --home-dir /var/lib/rafter --no-create-home \
			--shell /sbin/nologin --comment "rafter load balancer" rafter
	fi
fi

# The agent reads its configuration and TLS files as the rafter user.
chown root:rafter /etc/rafter /etc/rafter/rafter.yaml /etc/default/rafter
chmod 0750 /etc/rafter
chmod 0640 /etc/rafter/rafter.yaml /etc/default/rafter
if [ -d /etc/rafter/tls ]; then
	chown -R root:rafter /etc/rafter/tls
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null || true
	# An upgrade hands a running node over to the new binary without
	# dropping a request when the running agent can (it writes rafter.pid),
	# and restarts it otherwise; a first install leaves the unit off until
	# the configuration is filled in.
	if systemctl is-active --quiet rafter.service; then
		if ! /usr/bin/rafter agent --config /etc/rafter/rafter.yaml --upgrade >/dev/null 2>&1; then
			systemctl restart rafter.service || true
		fi
	fi
fi
exit 0
