#!/bin/sh
# Prints the demo manifest: a listener on 8080, a pool filled by the
# rafter-register@demo sidecars, a route, and a Linux VIP on the private
# network that may live on any node. VIP is its address in CIDR form, PEERS
# "n1=IP,n2=IP,n3=IP" (the first node is the VIP's home).
set -eu
: "${VIP:?}" "${PEERS:?}"
nodes=$(echo "$PEERS" | tr ',' '\n' | cut -d= -f1 | paste -sd, - | sed 's/,/, /g')
home=${PEERS%%=*}
cat <<YAML
kind: listener
name: web
spec: {port: 8080}
---
kind: pool
name: demo
spec:
  balancer: round_robin
  zone_aware: true
  health_check: {path: /, interval: 2s, timeout: 1s, rise: 2, fall: 3}
---
kind: route
name: demo
spec:
  listener: web
  match: {path: {prefix: /}}
  action:
    split: [{pool: demo, weight: 100}]
---
kind: vip
name: demo
spec: {provider: linux, address: $VIP, home_node: $home, candidates: [$nodes]}
YAML
