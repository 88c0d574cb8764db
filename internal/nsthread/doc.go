// Package nsthread runs a function on an OS thread inside another network
// namespace, for the Linux VIP holder and the namespace test rig alike. It
// imports nothing of rafter.
package nsthread
