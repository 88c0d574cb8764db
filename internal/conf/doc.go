// Package conf holds the two chores every rafter config struct repeats:
// filling zero fields from its defaults and refusing negative numbers,
// with errors that name the field's path. It imports nothing from rafter,
// so any package may use it.
package conf
