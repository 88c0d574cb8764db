// Package linearize holds the sequential model rafter's linearizability
// tests check histories against: one register per key with put, get and
// compare-and-set, as clients see a resource through the admin API.
//
// It is test support: it imports porcupine and nothing of rafter.
package linearize
