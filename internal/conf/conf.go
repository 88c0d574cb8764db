package conf

import "errors"

// Default sets *v to d when *v is the zero value of T, the value a field
// has when the caller left it out.
func Default[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Value is one numeric field for NotNegative: its path in error messages
// and whether it is below zero. Build it with Field.
type Value struct {
	path     string
	negative bool
}

// Field names v by its path (vip.tick) for NotNegative.
func Field[T ~int | ~int64 | ~float64](path string, v T) Value {
	return Value{path: path, negative: v < 0}
}

// NotNegative returns "<path>: must not be negative" for the first of
// fields that is below zero, and nil when none is.
func NotNegative(fields ...Value) error {
	for _, f := range fields {
		if f.negative {
			return errors.New(f.path + ": must not be negative")
		}
	}
	return nil
}
