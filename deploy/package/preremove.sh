#!/bin/sh
# Runs before rafter is removed (deb: remove; rpm: %preun). On an upgrade
# the node keeps running; postinstall upgrades it in place or restarts it.
set -e
case "$1" in
	remove | 0)
		if [ -d /run/systemd/system ]; then
			systemctl disable --now rafter.service >/dev/null 2>&1 || true
		fi
		;;
esac
exit 0
