#!/bin/sh
# Runs after rafter is removed. The data in /var/lib/rafter and the
# configuration stay unless the deb is purged.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
	rm -rf /var/lib/rafter
fi
exit 0
