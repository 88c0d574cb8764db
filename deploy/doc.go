// Package deploy holds what puts rafter on hosts: provisioning scripts
// (Vagrant and cloud user data), systemd units, packaging (nfpm), Terraform
// and Prometheus alert rules. It has no Go code of its own; its tests check
// those files against the binary and the source tree (units verify, the
// package installs, the IAM policy and the alert rules name only what the
// code uses). Those tests need the tools `make deps-ops` installs.
package deploy
